/*
** The AVX-512 q8_0 gemv and gemm of kernels.c, included twice: with
** Q8_TILE_VNNI 0 (AVX-512 BW: maddubs and madd on |x| and sign-adjusted
** weights) and 1 (AVX-512 VNNI: vpdpbusd on w + 128 and x, less 128 times
** the sum of x). Defines, under the names the includer gives, Q8_PAIR_DOT,
** Q8_CHUNK, Q8_TILE, Q8_GEMM_ROWS, Q8_SLICE_TILE, Q8_SLICE_TILES and
** Q8_SLICE_GEMM (VNNI), Q8_GEMM and Q8_GEMV, with attributes Q8_TILE_FN.
** The includer also says how rows are stored: Q8_ROW_BYTES a block,
** Q8_ROW_PAIR(blk, m) two blocks' values as int8 (q8_load_pair's layout),
** Q8_ROW_SCALES(blk) sixteen blocks' scales and Q8_ROW_PAIR_WSCALES(blk, m)
** a pair's; with Q8_ROW_ONLY only the tile and the gemv are defined (q4_0
** rows, whose values n - 8 are q8_0 values: their gemm is Q8_SLICE_GEMM's
** on q4_0 rows with VNNI, else q8_0's on rows converted). The VNNI gemm
** repacks with the includer's slice_row and q8_slice_token. The
** header undefines all of these at its end.
**
** The arithmetic, the same in both sets and in the gemv and the gemm (so
** gemm = gemv bit for bit, and the sets agree). A row's blocks go in
** chunks of 16, then the last nb % 16 in pairs.
**   - A chunk: each block's sum of 32 products is an exact integer; the
**     16 sums sit in the lanes of one vector (q8_lane_order), are converted
**     to float and FMAed, with the block scale products d_w d_x (each
**     rounded once), onto one 16-lane accumulator.
**   - A pair: 8 lanes a block, each the exact sum of 4 products, FMAed with
**     the block's d_w d_x onto the same accumulator (q8_pair_lanes).
** The accumulator is summed by avx512_hsum. Integers are exact
** whatever the order, so each path gets a chunk's sums its own way:
**   - from rows as stored (the gemv, the BW gemm, batches of fewer than
**     Q8_SLICE_MIN_T tokens): two blocks a register, eight partial sums a
**     block, added by q8_tree;
**   - from rows and tokens repacked into slices (the VNNI gemm): slice s of
**     a chunk holds bytes 4s..4s+3 of each block, a block a lane, so eight
**     vpdpbusd leave each block's whole sum in its lane, with no reduction:
**     about 11 instructions a row and token for 512 products, against about
**     30. Prefill of q8_0 rows ran 1.7-2.3x faster for it.
*/

/* Eight partial sums of each of two blocks, from their quants as loaded
** (w: the row's, x: the token's, ax: |x|): lanes 0-7 belong to the first
** block, 8-15 to the second. VNNI: without the -128 sum x term, which the
** caller adds once a chunk or pair (q8_pair_base). */
Q8_TILE_FN static ALWAYS_INLINE __m512i Q8_PAIR_DOT(__m512i w, __m512i x, __m512i ax) {
#if Q8_TILE_VNNI
  (void)ax;
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                             _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80)), x);
#else
  const __m512i ones = _mm512_set1_epi16(1), zero = _mm512_setzero_si512();
  __m512i sw = _mm512_mask_sub_epi8(w, _mm512_movepi8_mask(x), zero, w);
  return _mm512_madd_epi16(_mm512_maddubs_epi16(ax, sw), ones);
#endif
}

/* The chunk of 16 blocks from b of R rows against NT tokens, onto acc. */
Q8_TILE_FN static ALWAYS_INLINE void Q8_CHUNK(__m512 acc[2][4], const uint8_t *W, size_t ld,
                                              const GPTQ8Act *X, int t0, int K, int b, int R,
                                              int NT, int pf) {
  int nb = K / GPT_Q8_BLOCK;
  const __m512i order = q8_lane_order();
  __m512 ws[4];
  _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
    ws[i] = Q8_ROW_SCALES(W + i * ld + (size_t)b * Q8_ROW_BYTES);
  _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++) {
    const int8_t *xq = X->q + (size_t)(t0 + t) * K + (size_t)b * GPT_Q8_BLOCK;
    const int8_t *xa = X->aq + (size_t)(t0 + t) * K + (size_t)b * GPT_Q8_BLOCK;
    __m512 xd = _mm512_loadu_ps(X->d + (size_t)(t0 + t) * nb + b);
    __m512i P[8];
    (void)xa;
#if Q8_TILE_VNNI
    /* -128 times each block's sum of x */
    _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)
      P[j] = q8_pair_base(_mm512_loadu_si512(xq + j * 2 * GPT_Q8_BLOCK));
    __m512i base = q8_tree(P);
#endif
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
      const uint8_t *blk = W + i * ld + (size_t)b * Q8_ROW_BYTES;
      _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
        if (pf) q8_touch_ahead(blk + j * 2 * Q8_ROW_BYTES);
        P[j] = Q8_PAIR_DOT(Q8_ROW_PAIR(blk + j * 2 * Q8_ROW_BYTES, 2),
                           _mm512_loadu_si512(xq + j * 2 * GPT_Q8_BLOCK),
                           _mm512_loadu_si512(xa + j * 2 * GPT_Q8_BLOCK));
      }
      __m512i S = q8_tree(P);
#if Q8_TILE_VNNI
      S = _mm512_add_epi32(S, base);
#endif
      __m512 ds = _mm512_permutexvar_ps(order, _mm512_mul_ps(ws[i], xd));
      acc[t][i] = _mm512_fmadd_ps(ds, _mm512_cvtepi32_ps(S), acc[t][i]);
    }
  }
}

/* R rows (ld bytes apart) against NT quantized tokens from t0, R <= 4,
** NT <= 2, from the rows as stored: res (NT, 4). pf: each row's stream is
** touched PF_Q8_TILE_BYTES and twice that ahead (a decode step, whose rows
** come from memory), in the chunks and in the pairs after them: untouched,
** the pairs (a third of a row at K 768) ran the gemv from memory at 18 GB/s
** on 2 threads, against 21-24 at K 1536 and 3072, which have none. */
Q8_TILE_FN static ALWAYS_INLINE void Q8_TILE(float *res, const uint8_t *W, size_t ld,
                                             const GPTQ8Act *X, int t0, int K, int R, int NT,
                                             int pf) {
  int nb = K / GPT_Q8_BLOCK, b = 0;
  __m512 acc[2][4];
  _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++)
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) acc[t][i] = _mm512_setzero_ps();
  for (; b + 16 <= nb; b += 16) Q8_CHUNK(acc, W, ld, X, t0, K, b, R, NT, pf);
  /* the last nb % 16 blocks a pair at a time */
  for (; b < nb; b += 2) {
    int m = nb - b;
    _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++) {
      const int8_t *xq = X->q + (size_t)(t0 + t) * K + (size_t)b * GPT_Q8_BLOCK;
      const int8_t *xa = X->aq + (size_t)(t0 + t) * K + (size_t)b * GPT_Q8_BLOCK;
      const float *dx = X->d + (size_t)(t0 + t) * nb + b;
      __m512i x = q8_load_pair(xq, GPT_Q8_BLOCK, m), ax = x;
      (void)xa;
#if Q8_TILE_VNNI
      __m512i base = q8_pair_base(x);
#else
      ax = q8_load_pair(xa, GPT_Q8_BLOCK, m);
#endif
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
        const uint8_t *blk = W + i * ld + (size_t)b * Q8_ROW_BYTES;
        if (pf && t == 0) q8_touch_ahead(blk); /* as a chunk touches its pairs */
        __m512i P = Q8_PAIR_DOT(Q8_ROW_PAIR(blk, m), x, ax);
#if Q8_TILE_VNNI
        P = _mm512_add_epi32(P, base);
#endif
        __m512 ds = _mm512_mul_ps(Q8_ROW_PAIR_WSCALES(blk, m), q8_pair_xscales(dx, m));
        acc[t][i] = _mm512_fmadd_ps(ds, _mm512_cvtepi32_ps(P), acc[t][i]);
      }
    }
  }
  avx512_hsum_tile(res, 4, &acc[0][0], 4, NT, R);
}

#ifndef Q8_ROW_ONLY
#undef AVX512_TILE_Q8_CASE
#define AVX512_TILE_Q8_CASE(R, NT) \
  case (R) * 4 + (NT): Q8_TILE(res, w, ld, X, t, K, R, NT, 0); break;

/* The gemm from rows as stored (the BW set, a batch of fewer than
** Q8_SLICE_MIN_T tokens, or no memory for the slices). */
Q8_TILE_FN static void Q8_GEMM_ROWS(float *out, size_t ldo, const uint8_t *W,
                                    const GPTQ8Act *X, int T, const float *bias, int r0,
                                    int r1, int K, int mode) {
  size_t ld = (size_t)(K / GPT_Q8_BLOCK) * Q8_ROW_BYTES;
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
        avx512_store_block(out + (size_t)t * ldo, ldo, r, res, 4, nt, R, bias, mode);
      }
    }
  }
}

#if Q8_TILE_VNNI
/* R repacked rows against NT repacked tokens (see q8_slice_token and
** q8_slice_row): nc chunks of slices, then np pairs, stored through o. */
Q8_TILE_FN static ALWAYS_INLINE void Q8_SLICE_TILE(const TileStore *o, const __m512i *wr,
                                                   size_t wstride, const __m512i *xt,
                                                   size_t xstride, int nc, int np, int R,
                                                   int NT) {
  __m512 acc[3][4];
  _Pragma("GCC unroll 3") for (int t = 0; t < NT; t++)
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) acc[t][i] = _mm512_setzero_ps();
  for (int c = 0; c < nc; c++) {
    __m512i S[3][4];
    _Pragma("GCC unroll 3") for (int t = 0; t < NT; t++) {
      __m512i base = _mm512_load_si512(xt + t * xstride + c * Q8_TOKEN_VECS + 8);
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) S[t][i] = base;
    }
    _Pragma("GCC unroll 8") for (int s = 0; s < 8; s++) {
      __m512i w[4];
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
        w[i] = avx512_in_reg(_mm512_load_si512(wr + i * wstride + c * Q8_ROW_VECS + s));
      _Pragma("GCC unroll 3") for (int t = 0; t < NT; t++) {
        __m512i x = _mm512_load_si512(xt + t * xstride + c * Q8_TOKEN_VECS + s);
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
          S[t][i] = _mm512_dpbusd_epi32(S[t][i], w[i], x);
      }
    }
    _Pragma("GCC unroll 3") for (int t = 0; t < NT; t++) {
      __m512 xd = _mm512_castsi512_ps(_mm512_load_si512(xt + t * xstride + c * Q8_TOKEN_VECS + 9));
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
        __m512 wd = _mm512_castsi512_ps(_mm512_load_si512(wr + i * wstride + c * Q8_ROW_VECS + 8));
        acc[t][i] = _mm512_fmadd_ps(_mm512_mul_ps(wd, xd), _mm512_cvtepi32_ps(S[t][i]), acc[t][i]);
      }
    }
  }
  const __m512i *wp = wr + (size_t)nc * Q8_ROW_VECS, *xp = xt + (size_t)nc * Q8_TOKEN_VECS;
  for (int j = 0; j < np; j++) {
    __m512i w[4];
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
      w[i] = avx512_in_reg(_mm512_load_si512(wp + i * wstride + 2 * j));
    _Pragma("GCC unroll 3") for (int t = 0; t < NT; t++) {
      __m512i x = _mm512_load_si512(xp + t * xstride + 3 * j);
      __m512i base = _mm512_load_si512(xp + t * xstride + 3 * j + 1);
      __m512 xd = _mm512_castsi512_ps(_mm512_load_si512(xp + t * xstride + 3 * j + 2));
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
        __m512i P = _mm512_dpbusd_epi32(base, w[i], x);
        __m512 wd = _mm512_castsi512_ps(_mm512_load_si512(wp + i * wstride + 2 * j + 1));
        acc[t][i] = _mm512_fmadd_ps(_mm512_mul_ps(wd, xd), _mm512_cvtepi32_ps(P), acc[t][i]);
      }
    }
  }
  __m256 rows[3];
  avx512_tile_rows(rows, &acc[0][0], 4, NT, R);
  avx512_store_rows(o, rows, NT, R);
}

#define Q8_SLICE_CASE(R, NT) \
  case (R) * 4 + (NT): Q8_SLICE_TILE(o, wr, wstride, xt, xstride, nc, np, R, NT); break;

/* Q8_SLICE_TILE with R and NT constant, in a function of its own: inlined
** into the gemm's loops, its accumulators went to the stack (see
** avx512_tile in kernels.c). */
Q8_TILE_FN static __attribute__((noinline)) void Q8_SLICE_TILES(const TileStore *o,
                                                                const __m512i *wr,
                                                                size_t wstride,
                                                                const __m512i *xt,
                                                                size_t xstride, int nc, int np,
                                                                int R, int NT) {
  switch (R * 4 + NT) {
    Q8_SLICE_CASE(4, 3) Q8_SLICE_CASE(4, 2) Q8_SLICE_CASE(4, 1) Q8_SLICE_CASE(3, 3)
    Q8_SLICE_CASE(3, 2) Q8_SLICE_CASE(3, 1) Q8_SLICE_CASE(2, 3) Q8_SLICE_CASE(2, 2)
    Q8_SLICE_CASE(2, 1) Q8_SLICE_CASE(1, 3) Q8_SLICE_CASE(1, 2)
    default: Q8_SLICE_TILE(o, wr, wstride, xt, xstride, nc, np, 1, 1);
  }
}

/* The gemm on slices, for rows in a form of slice_row's (q8_0 blocks,
** packed q8_0 rows, or q4_0 blocks):
** each block of up to Q8_SLICE_ROWS rows repacked once, then each sweep's
** tokens repacked and met by the block's rows, 4 at a time. A product
** hands the gemm 96 rows a call, so rows and tokens are each repacked once
** a call. -1, with nothing written, when the buffer cannot be had. */
Q8_TILE_FN static int Q8_SLICE_GEMM(float *out, size_t ldo, const uint8_t *W,
                                    const GPTQ8Act *X, int T, const float *bias, int r0,
                                    int r1, int K, int mode, int form) {
  int nb = K / GPT_Q8_BLOCK, nc = nb / 16, np = (nb % 16 + 1) / 2;
  size_t ld = (size_t)nb * (form == Q8_FORM_Q4_0 ? GPT_Q4_0_BYTES : GPT_Q8_BYTES);
  size_t xv = q8_token_vecs(K), wv = q8_row_vecs(K); /* vectors a token, a row */
  int sweep = gemm_sweep(K, 2);
  int nrow = r1 - r0 < Q8_SLICE_ROWS ? r1 - r0 : Q8_SLICE_ROWS;
  if (r1 <= r0 || T < 1) return 0;
  __m512i *buf = nb > 0 ? aligned_alloc(64, ((size_t)nrow * wv +
                                             (size_t)(sweep < T ? sweep : T) * xv) * 64)
                        : NULL;
  if (!buf) return -1;
  __m512i *wr = buf, *xs = buf + (size_t)nrow * wv;
  Q8SliceIdx ix;
  q8_slice_idx(&ix);
  for (int rb = r0; rb < r1; rb += Q8_SLICE_ROWS) {
    int rb1 = r1 - rb < Q8_SLICE_ROWS ? r1 : rb + Q8_SLICE_ROWS;
    for (int r = rb; r < rb1; r++)
      slice_row(wr + (size_t)(r - rb) * wv, W + (size_t)r * ld, K, &ix, form);
    for (int t0 = 0; t0 < T; t0 += sweep) {
      int t1 = t0 + sweep < T ? t0 + sweep : T;
      for (int t = t0; t < t1; t++) q8_slice_token(xs + (size_t)(t - t0) * xv, X, t, K, &ix);
      for (int r = rb; r < rb1; r += 4) {
        int R = rb1 - r < 4 ? rb1 - r : 4;
        for (int t = t0; t < t1; t += 3) {
          int nt = t1 - t < 3 ? t1 - t : 3;
          TileStore o = {out + (size_t)t * ldo, ldo, r, bias, mode};
          Q8_SLICE_TILES(&o, wr + (size_t)(r - rb) * wv, wv, xs + (size_t)(t - t0) * xv, xv, nc,
                         np, R, nt);
        }
      }
    }
  }
  free(buf);
  return 0;
}

/* The gemm on slices, or on the rows as stored for a small batch or when
** the buffer cannot be had. */
Q8_TILE_FN static void Q8_GEMM(float *out, size_t ldo, const uint8_t *W, const GPTQ8Act *X,
                               int T, const float *bias, int r0, int r1, int K, int mode) {
  if (T < Q8_SLICE_MIN_T ||
      Q8_SLICE_GEMM(out, ldo, W, X, T, bias, r0, r1, K, mode, Q8_FORM_STORED))
    Q8_GEMM_ROWS(out, ldo, W, X, T, bias, r0, r1, K, mode);
}
#else
Q8_TILE_FN static void Q8_GEMM(float *out, size_t ldo, const uint8_t *W, const GPTQ8Act *X,
                               int T, const float *bias, int r0, int r1, int K, int mode) {
  Q8_GEMM_ROWS(out, ldo, W, X, T, bias, r0, r1, K, mode);
}
#endif

#endif /* Q8_ROW_ONLY */

/* The decode gemv: four rows a pass on the tile with one token (the same
** arithmetic as above, so gemm = gemv), each row's stream prefetched. Four
** rows share x's loads and keep four chains in flight. */
Q8_TILE_FN static void Q8_GEMV(float *y, const uint8_t *W, const GPTQ8Act *x,
                               const float *bias, int r0, int r1, int K, int mode) {
  size_t ld = (size_t)(K / GPT_Q8_BLOCK) * Q8_ROW_BYTES;
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

/* The includer's names, free for its next inclusion. */
#undef Q8_TILE_FN
#undef Q8_TILE_VNNI
#undef Q8_TILE
#undef Q8_CHUNK
#undef Q8_GEMM_ROWS
#undef Q8_PAIR_DOT
#undef Q8_SLICE_TILE
#undef Q8_SLICE_TILES
#undef Q8_SLICE_GEMM
#undef Q8_GEMM
#undef Q8_GEMV
#undef Q8_ROW_ONLY
#undef Q8_ROW_BYTES
#undef Q8_ROW_PAIR
#undef Q8_ROW_SCALES
#undef Q8_ROW_PAIR_WSCALES
