/*
** The AVX-512 q8_0 tile, gemm and gemv of kernels.c, included twice: with
** Q8_TILE_VNNI 0 (AVX-512 BW: maddubs and madd on |x| and sign-adjusted
** weights) and 1 (AVX-512 VNNI: one vpdpbusd on w + 128 and x, less 128
** times the sum of x). Both give each lane the same exact integer sum of
** four products, so the two sets' results are equal bit for bit, and the
** gemm's equal the gemv's. Defines Q8_TILE, Q8_GEMM and Q8_GEMV, named by
** the includer, with attributes Q8_TILE_FN.
*/
/* R rows (ld bytes apart) against NT quantized tokens from t0, R <= 4,
** NT <= 2: each value's arithmetic is one row's against one token (each
** block scale product d_w d_x rounded once, pairs of blocks FMAed in order
** onto one 16-lane accumulator), the quants of a row loaded once for the
** tokens. res (NT, 4). pf: each row's stream is touched PF_Q8_TILE_BYTES
** ahead (a decode step, whose rows come from memory). */
Q8_TILE_FN static ALWAYS_INLINE void Q8_TILE(float *res, const uint8_t *W, size_t ld,
                                                   const GPTQ8Act *X, int t0, int K, int R,
                                                   int NT, int pf) {
  int nb = K / GPT_Q8_BLOCK;
  __m512 acc[2][4];
  __m256 acc1[2][4];
  _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++)
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
      acc[t][i] = _mm512_setzero_ps();
      acc1[t][i] = _mm256_setzero_ps();
    }
  int b = 0;
  for (; b + 16 <= nb; b += 16) {
    __m512 ds[2][4];
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
      const uint8_t *blk16 = W + i * ld + (size_t)b * GPT_Q8_BYTES;
      uint16_t h[16];
      for (int j = 0; j < 16; j++) h[j] = q8_scale_bits(blk16 + j * GPT_Q8_BYTES);
      __m512 ws = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h));
      _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++)
        ds[t][i] = _mm512_mul_ps(ws, _mm512_loadu_ps(X->d + (size_t)(t0 + t) * nb + b));
    }
    for (int j = 0; j < 16; j += 2) {
      __m512i lanes = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(j)),
                                         _mm256_set1_epi32(j + 1), 1);
      __m512i w[4];
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
        if (pf) {
          PREFETCH(W + i * ld + (size_t)(b + j) * GPT_Q8_BYTES + PF_Q8_TILE_BYTES);
          PREFETCH(W + i * ld + (size_t)(b + j) * GPT_Q8_BYTES + PF_Q8_TILE_BYTES + 64);
        }
        w[i] = avx512_q8_pair_quants(W + i * ld + (size_t)(b + j) * GPT_Q8_BYTES);
#if Q8_TILE_VNNI
        w[i] = _mm512_xor_si512(w[i], _mm512_set1_epi8((char)0x80)); /* w + 128, unsigned */
#endif
      }
      _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++) {
        size_t o = (size_t)(t0 + t) * K + (size_t)(b + j) * GPT_Q8_BLOCK;
        __m512i xq = _mm512_loadu_si512((const void *)(X->q + o));
#if Q8_TILE_VNNI
        /* sum (w + 128) x - 128 sum x per lane of four: the same exact sums */
        __m512i base = _mm512_sub_epi32(
            _mm512_setzero_si512(),
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), xq));
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
          acc[t][i] = _mm512_fmadd_ps(_mm512_permutexvar_ps(lanes, ds[t][i]),
                                      _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(base, w[i], xq)),
                                      acc[t][i]);
#else
        __m512i axq = _mm512_loadu_si512((const void *)(X->aq + o));
        __mmask64 neg = _mm512_movepi8_mask(xq);
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
          acc[t][i] = _mm512_fmadd_ps(_mm512_permutexvar_ps(lanes, ds[t][i]),
                                      avx512_q8_pair_sums(w[i], axq, neg), acc[t][i]);
#endif
      }
    }
  }
  for (; b + 2 <= nb; b += 2) {
    _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++) {
      size_t o = (size_t)(t0 + t) * K + (size_t)b * GPT_Q8_BLOCK;
      const float *dx = X->d + (size_t)(t0 + t) * nb + b;
      __m512i xq = _mm512_loadu_si512((const void *)(X->q + o));
      __m512i axq = _mm512_loadu_si512((const void *)(X->aq + o));
      __mmask64 neg = _mm512_movepi8_mask(xq);
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
        const uint8_t *blk = W + i * ld + (size_t)b * GPT_Q8_BYTES;
        __m256 s0 = _mm256_set1_ps(_cvtsh_ss(q8_scale_bits(blk)) * dx[0]);
        __m256 s1 = _mm256_set1_ps(_cvtsh_ss(q8_scale_bits(blk + GPT_Q8_BYTES)) * dx[1]);
        __m512 d = _mm512_castsi512_ps(_mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_castps_si256(s0)), _mm256_castps_si256(s1), 1));
        acc[t][i] = _mm512_fmadd_ps(d, avx512_q8_pair(blk, axq, neg), acc[t][i]);
      }
    }
  }
  if (b < nb) { /* an odd last block, on 256 bits */
    _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++) {
      size_t o = (size_t)(t0 + t) * K + (size_t)b * GPT_Q8_BLOCK;
      __m256i xq = _mm256_loadu_si256((const __m256i *)(X->q + o));
      __m256i axq = _mm256_loadu_si256((const __m256i *)(X->aq + o));
      float dx = X->d[(size_t)(t0 + t) * nb + b];
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
        const uint8_t *blk = W + i * ld + (size_t)b * GPT_Q8_BYTES;
        __m256 d = _mm256_set1_ps(_cvtsh_ss(q8_scale_bits(blk)) * dx);
        acc1[t][i] = _mm256_fmadd_ps(d, avx2_q8_block(blk, xq, axq), acc1[t][i]);
      }
    }
  }
  _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++)
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
      res[t * 4 + i] = _mm512_reduce_add_ps(acc[t][i]) + hsum256(acc1[t][i]);
}

#undef AVX512_TILE_Q8_CASE
#define AVX512_TILE_Q8_CASE(R, NT) \
  case (R) * 4 + (NT): Q8_TILE(res, w, ld, X, t, K, R, NT, 0); break;

Q8_TILE_FN static void Q8_GEMM(float *out, size_t ldo, const uint8_t *W,
                                     const GPTQ8Act *X, int T, const float *bias, int r0,
                                     int r1, int K, int mode) {
  size_t ld = (size_t)(K / GPT_Q8_BLOCK) * GPT_Q8_BYTES;
  float res[8];
  int sweep = gemm_sweep(K, 2);
  for (int t0 = 0; t0 < T; t0 += sweep) {
    int t1 = t0 + sweep < T ? t0 + sweep : T;
    for (int r = r0; r < r1; r += 4) {
      const uint8_t *w = W + (size_t)r * ld;
      int R = r1 - r < 4 ? r1 - r : 4;
      for (int t = t0; t < t1; t += 2) {
        int nt = t1 - t < 2 ? t1 - t : 2;
        switch (R * 4 + nt) {
          AVX512_TILE_Q8_CASE(4, 2) AVX512_TILE_Q8_CASE(4, 1) AVX512_TILE_Q8_CASE(3, 2)
          AVX512_TILE_Q8_CASE(3, 1) AVX512_TILE_Q8_CASE(2, 2) AVX512_TILE_Q8_CASE(2, 1)
          AVX512_TILE_Q8_CASE(1, 2) default: Q8_TILE(res, w, ld, X, t, K, 1, 1, 0);
        }
        store_block(out + (size_t)t * ldo, ldo, r, res, 4, nt, R, bias, mode);
      }
    }
  }
}

/* The decode gemv: four rows a pass on the tile with one token (the same
** arithmetic as above, so gemm = gemv), each row's stream prefetched. Four
** rows share x's loads and keep four FMA chains in flight: one row a pass
** ran at 33 GB/s on weights in L2, short of memory's 40. */
Q8_TILE_FN static void Q8_GEMV(float *y, const uint8_t *W, const GPTQ8Act *x,
                               const float *bias, int r0, int r1, int K, int mode) {
  size_t ld = (size_t)(K / GPT_Q8_BLOCK) * GPT_Q8_BYTES;
  float res[8];
  int r = r0;
  for (; r + 4 <= r1; r += 4) {
    Q8_TILE(res, W + (size_t)r * ld, ld, x, 0, K, 4, 1, 1);
    for (int i = 0; i < 4; i++) store_row(y, r + i, res[i], bias, mode);
  }
  for (; r < r1; r++) {
    Q8_TILE(res, W + (size_t)r * ld, ld, x, 0, K, 1, 1, 1);
    store_row(y, r, res[0], bias, mode);
  }
}
