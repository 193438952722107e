/*
** Storage dtypes: names, sizes, and conversions between f32 and the 16-bit
** formats (IEEE half and bfloat16), bit-exact and independent of the FPU mode.
*/
#include <string.h>
#include "gpt.h"

/* Maps a stored dtype name to its code, or -1 for anything else. */
int gpt_dtype_from_name(const char *z) {
  if (z == 0) return -1;
  if (strcmp(z, "f32") == 0) return GPT_F32;
  if (strcmp(z, "f16") == 0) return GPT_F16;
  if (strcmp(z, "bf16") == 0) return GPT_BF16;
  return -1;
}

/* Like gpt_dtype_from_name, with the block formats. */
int gpt_row_dtype_from_name(const char *z) {
  if (z && strcmp(z, "q8_0") == 0) return GPT_Q8_0;
  if (z && strcmp(z, "q4_0") == 0) return GPT_Q4_0;
  if (z && strcmp(z, "q4_k") == 0) return GPT_Q4_K;
  if (z && strcmp(z, "q6_k") == 0) return GPT_Q6_K;
  return gpt_dtype_from_name(z);
}

/* The stored name of a dtype code. */
const char *gpt_dtype_name(int dtype) {
  switch (dtype) {
    case GPT_F32: return "f32";
    case GPT_F16: return "f16";
    case GPT_BF16: return "bf16";
    case GPT_Q8_0: return "q8_0";
    case GPT_Q4_0: return "q4_0";
    case GPT_Q4_K: return "q4_k";
    case GPT_Q6_K: return "q6_k";
  }
  return "?";
}

/* Values and bytes of one block of a block format (ggml's block_q8_0,
** block_q4_0, block_q4_K, block_q6_K); 0 for element dtypes. */
int gpt_dtype_block(int dtype, int *pBytes) {
  int nVal = 0, nByte = 0;
  switch (dtype) {
    case GPT_Q8_0: nVal = 32; nByte = 34; break;   /* f16 d, 32 int8 */
    case GPT_Q4_0: nVal = 32; nByte = 18; break;   /* f16 d, 16 bytes of nibbles */
    case GPT_Q4_K: nVal = 256; nByte = 144; break; /* f16 d, dmin, 12 scale bytes, 128 */
    case GPT_Q6_K: nVal = 256; nByte = 210; break; /* 128 ql, 64 qh, 16 int8, f16 d */
  }
  if (pBytes) *pBytes = nByte;
  return nVal;
}

/* Bytes per element of a dtype, 0 for an unknown code. */
int gpt_dtype_size(int dtype) {
  switch (dtype) {
    case GPT_F32: return 4;
    case GPT_F16: case GPT_BF16: return 2;
  }
  return 0;
}

static float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Widens an IEEE half, subnormals, infinities and NaN included. */
float gpt_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    if (man == 0) return bits_to_f32(sign);
    /* subnormal: value is man * 2^-24 */
    float f = (float)man * (1.0f / 16777216.0f);
    return sign ? -f : f;
  }
  return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* Widens a bfloat16: it is the top half of an f32. */
float gpt_bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

/* Narrows to IEEE half with round-to-nearest-even; overflow gives infinity. */
uint16_t gpt_f32_to_f16(float f) {
  uint32_t u = f32_to_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) /* Inf or NaN */
    return sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0);
  if (a >= 0x477ff000u) return sign | 0x7c00; /* rounds past 65504 */
  if (a < 0x38800000u) { /* below the smallest normal half: subnormal or 0 */
    if (a < 0x33000000u) return sign; /* under half of the smallest subnormal */
    uint32_t e = a >> 23, man = (a & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t v = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (v & 1))) v++;
    return sign | (uint16_t)v;
  }
  uint32_t v = ((a >> 13) - (112u << 10));
  uint32_t rem = a & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (v & 1))) v++;
  return sign | (uint16_t)v;
}

/* Narrows to bfloat16 with round-to-nearest-even; NaN stays NaN. */
uint16_t gpt_f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fff + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}
