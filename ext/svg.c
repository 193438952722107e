/*
** Attention as a picture: gpt_attention_svg draws one layer's attention
** weights as a standalone SVG heatmap.
**
**   SELECT gpt_attention_svg('The cat sat on the mat', '{"layer": 3, "head": 1}');
**   SELECT gpt_attention_svg('To be, or not', '{"layer": 0, "head": "all"}');
**   sqlite3 my.db "SELECT gpt_attention_svg('...', '{\"layer\":5,\"head\":1}')" > head.svg
**
** gpt_attention_svg(text [, options]) returns an SVG document (TEXT, UTF-8)
** of the weights gpt_attention returns for the same text and options: one
** square cell per (query, key) pair with key <= query, query tokens labelling
** the rows, key tokens the columns. Options: those of gpt_attention (model,
** special, truncate, "generate": n with the generation options, threads),
** plus "layer" (default 0) and "head": one query head (default 0) or "all",
** a grid with one panel per head of the layer. Llama-family models have one
** panel per query head, as gpt_attention has rows.
**
** The picture:
**   - cell colour: the weight on a 0..1 scale, ColorBrewer's 9-class Blues
**     (#f7fbff at 0 to #08306b at 1) interpolated linearly in sRGB between
**     its stops, each channel rounded to the nearest integer (svgColour); a
**     legend shows the scale;
**   - masked (future) cells, key > query, are one hatched grey region per
**     panel, never a colour of the scale;
**   - labels show at most SVG_LABEL_CHARS characters of a token, then '…';
**     they are escaped for XML, a space shows as '·', a newline as '↵', a tab
**     as '⇥', a carriage return and the other control characters as their
**     Unicode control pictures (U+2400..), and bytes that are not UTF-8 as
**     U+FFFD;
**   - each cell has a <title> (shown on hover) "query Q: label", "key K:
**     label" and "weight: W" on three lines, W with 9 significant digits, so
**     it reads back as the exact float32 gpt_attention returns.
** Cells shrink from 28 to 6 pixels as the sequence grows (up to the model's
** window). The document has about 130 bytes per cell; a call that would draw
** more than SVG_MAX_CELLS cells (heads times T (T + 1) / 2 for T tokens)
** fails with an error that names the count and the limit. A NULL or empty
** text (no tokens, no "generate") returns NULL.
**
** How it works: the text is fitted and extended exactly as gpt_attention
** does (gptext_attention_sequence), one batch runs layer by layer up to the
** wanted layer, keeping only its wanted heads' probabilities, and the
** document is built in one sqlite3_str. DIRECTONLY and not DETERMINISTIC: it
** runs the model (and may sample).
*/
#include "gpt_ext.h"
#include <string.h>

/* Cells of one document, at about 130 bytes each (78 MB at most): one head
** of GPT-2's whole 1024-token window is 524,800 cells. */
#define SVG_MAX_CELLS 600000
#define SVG_LABEL_CHARS 16    /* characters of a token shown in a label */

/* ColorBrewer Blues, 9 classes: the stops of the 0..1 scale. */
static const unsigned char aSvgScale[9][3] = {
  {0xf7, 0xfb, 0xff}, {0xde, 0xeb, 0xf7}, {0xc6, 0xdb, 0xef}, {0x9e, 0xca, 0xe1},
  {0x6b, 0xae, 0xd6}, {0x42, 0x92, 0xc6}, {0x21, 0x71, 0xb5}, {0x08, 0x51, 0x9c},
  {0x08, 0x30, 0x6b},
};

/* The colour of weight w as "#rrggbb" in zOut (8 bytes): linear in sRGB
** between the two stops around w, w clamped to 0..1 (a NaN counts as 0). */
static void svgColour(double w, char *zOut) {
  static const char zHex[] = "0123456789abcdef";
  if (!(w > 0)) w = 0;
  if (w > 1) w = 1;
  double t = w * 8;
  int i = (int)t;
  if (i > 7) i = 7;
  double f = t - i;
  zOut[0] = '#';
  for (int c = 0; c < 3; c++) {
    double v = aSvgScale[i][c] + (aSvgScale[i + 1][c] - aSvgScale[i][c]) * f;
    int x = (int)(v + 0.5);
    zOut[1 + 2 * c] = zHex[x >> 4];
    zOut[2 + 2 * c] = zHex[x & 15];
  }
  zOut[7] = 0;
}

/* Decodes the code point at z[*pi] of valid UTF-8 and advances *pi. */
static unsigned svgNextChar(const unsigned char *z, size_t *pi) {
  size_t i = *pi;
  unsigned c = z[i++];
  int nMore = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
  if (nMore) c &= 0x3f >> nMore;
  while (nMore-- > 0) c = (c << 6) | (z[i++] & 0x3f);
  *pi = i;
  return c;
}

/* Appends n bytes of text escaped for XML character data and attributes,
** at most nMaxChars characters of it (then '…'). Bytes that are not UTF-8
** become U+FFFD first, and characters XML 1.0 forbids are replaced. With
** bVisible, whitespace and control characters show as visible marks (see
** the header comment). Returns the width in ems, generously: 0.7 a
** character below U+1100, 1.1 above (CJK, emoji), for laying out labels. */
static double svgAppendText(sqlite3_str *pOut, const char *zIn, int nIn, int nMaxChars,
                            int bVisible) {
  char *zFixed = 0;
  const unsigned char *z = (const unsigned char *)zIn;
  size_t n = zIn && nIn > 0 ? (size_t)nIn : 0, i = 0;
  double width = 0;
  if (n && !gptext_utf8_valid(zIn, n)) {
    size_t nFixed = gptext_utf8_repair(zIn, n, 0);
    zFixed = sqlite3_malloc64(nFixed + 1);
    if (!zFixed) {
      sqlite3_str_appendall(pOut, "\xef\xbf\xbd"); /* no memory: one U+FFFD */
      return 1;
    }
    gptext_utf8_repair(zIn, n, zFixed);
    z = (const unsigned char *)zFixed;
    n = nFixed;
  }
  for (int nChars = 0; i < n; nChars++) {
    if (nChars == nMaxChars) {
      sqlite3_str_appendall(pOut, "\xe2\x80\xa6"); /* … */
      width += 1.1;
      break;
    }
    size_t iStart = i;
    unsigned c = svgNextChar(z, &i);
    width += c < 0x1100 ? 0.7 : 1.1;
    switch (c) {
      case '&': sqlite3_str_appendall(pOut, "&amp;"); continue;
      case '<': sqlite3_str_appendall(pOut, "&lt;"); continue;
      case '>': sqlite3_str_appendall(pOut, "&gt;"); continue;
      case '"': sqlite3_str_appendall(pOut, "&quot;"); continue;
      case '\'': sqlite3_str_appendall(pOut, "&apos;"); continue;
      default: break;
    }
    if (bVisible && c == ' ') {
      sqlite3_str_appendall(pOut, "\xc2\xb7"); /* · */
    } else if (bVisible && c == '\n') {
      sqlite3_str_appendall(pOut, "\xe2\x86\xb5"); /* ↵ */
    } else if (bVisible && c == '\t') {
      sqlite3_str_appendall(pOut, "\xe2\x87\xa5"); /* ⇥ */
    } else if (c < 0x20 && (bVisible || (c != '\t' && c != '\n'))) {
      /* control pictures U+2400..U+241F: XML 1.0 forbids most of these */
      char zPic[3] = {(char)0xe2, (char)0x90, (char)(0x80 + c)};
      sqlite3_str_append(pOut, zPic, 3);
    } else if (c == 0x7f && bVisible) {
      sqlite3_str_appendall(pOut, "\xe2\x90\xa1"); /* ␡ */
    } else if (c >= 0x80 && c <= 0x9f && bVisible) {
      /* C1 controls (U+0085 NEL ...) have no control pictures: invisible */
      sqlite3_str_appendall(pOut, "\xef\xbf\xbd");
    } else if (c == 0xfffe || c == 0xffff) {
      sqlite3_str_appendall(pOut, "\xef\xbf\xbd"); /* not XML characters */
    } else {
      sqlite3_str_append(pOut, (const char *)z + iStart, (int)(i - iStart));
    }
  }
  sqlite3_free(zFixed);
  return width;
}

/* What the forward pass's callbacks need. */
typedef struct SvgPass {
  sqlite3 *db;
  int iLayer;          /* the layer drawn */
  int iHead;           /* the head drawn, or -1 for all */
  int T;               /* tokens */
  int nPanel;          /* heads drawn */
  float *aProb;        /* (nPanel, T, T) weights, key <= query filled */
  unsigned char *abGot; /* (nPanel,) set when a panel's rows arrived */
} SvgPass;

/* Asks the pass for the drawn heads of the drawn layer only. */
static int svgWant(void *ctx, int layer, int head) {
  SvgPass *p = (SvgPass *)ctx;
  return layer == p->iLayer && (p->iHead < 0 || head == p->iHead);
}

/* Keeps the causal part of the delivered rows (n_q, n_k) of one head. */
static int svgKeep(void *ctx, int layer, int head, int q0, int n_q, int n_k,
                   const float *probs) {
  SvgPass *p = (SvgPass *)ctx;
  int iPanel = p->iHead < 0 ? head : 0;
  (void)layer;
  if (iPanel < 0 || iPanel >= p->nPanel || n_k < 0) return 0;
  float *dst = p->aProb + (size_t)iPanel * p->T * p->T;
  for (int r = 0; r < n_q; r++) {
    int q = q0 + r;
    if (q < 0 || q >= p->T) continue;
    int nCopy = q + 1 < n_k ? q + 1 : n_k;
    memcpy(dst + (size_t)q * p->T, probs + (size_t)r * n_k, sizeof(float) * (size_t)nCopy);
  }
  p->abGot[iPanel] = 1;
  return 0;
}

/* Stops the pass between layers once the statement is interrupted. */
static int svgStop(void *ctx) {
  return gptext_interrupted(((SvgPass *)ctx)->db);
}

/* The layout of the document, in pixels: every panel is the same size. */
typedef struct SvgLayout {
  int T;               /* tokens */
  int cell;            /* side of a cell */
  int font;            /* label font size */
  int label;           /* room for the labels left of and above the cells */
  int panelW, panelH;  /* one panel: title, labels, cells */
  int nCol, nRow;      /* grid of panels */
  int width, height;   /* the whole document */
  int legendX;         /* left of the legend */
} SvgLayout;

#define SVG_MARGIN 12
#define SVG_HEADER 30    /* the document's heading line */
#define SVG_PANEL_TITLE 18
#define SVG_GAP 20       /* between panels */
#define SVG_LEGEND_W 130
#define SVG_LEGEND_H 160 /* height of the colour bar */

/* Sizes cells and labels for T tokens and nPanel panels; labelEms is the
** widest label in ems. */
static void svgLayout(SvgLayout *L, int T, int nPanel, double labelEms) {
  L->T = T;
  L->cell = T <= 16 ? 28 : 448 / T;
  if (L->cell < 6) L->cell = 6;
  L->font = L->cell >= 14 ? 12 : L->cell - 1;
  L->label = (int)(labelEms * L->font) + 10;
  L->panelW = L->label + T * L->cell;
  L->panelH = SVG_PANEL_TITLE + L->label + T * L->cell;
  L->nCol = 1;
  while (L->nCol * L->nCol < nPanel) L->nCol++;
  L->nRow = (nPanel + L->nCol - 1) / L->nCol;
  int gridW = L->nCol * L->panelW + (L->nCol - 1) * SVG_GAP;
  int gridH = L->nRow * L->panelH + (L->nRow - 1) * SVG_GAP;
  int legendH = SVG_PANEL_TITLE + SVG_LEGEND_H + 40;
  L->legendX = SVG_MARGIN + gridW + SVG_GAP;
  L->width = L->legendX + SVG_LEGEND_W + SVG_MARGIN;
  L->height = SVG_HEADER + (gridH > legendH ? gridH : legendH) + SVG_MARGIN;
}

/* Appends the hatched region of the masked cells (key > query) of a panel
** whose cells start at (x0, y0): a staircase above the diagonal. */
static void svgAppendMasked(sqlite3_str *pOut, const SvgLayout *L, int x0, int y0) {
  int s = L->cell, T = L->T;
  if (T < 2) return;
  sqlite3_str_appendf(pOut, "<path class=\"masked\" fill=\"url(#gpt-attn-masked)\" "
                      "transform=\"translate(%d,%d)\" d=\"M%d,0H%dV%d", x0, y0, s, T * s,
                      (T - 1) * s);
  for (int q = T - 2; q >= 0; q--) sqlite3_str_appendf(pOut, "H%dV%d", (q + 1) * s, q * s);
  sqlite3_str_appendall(pOut, "Z\"><title>masked: a query does not attend to later "
                        "tokens</title></path>\n");
}

/* Appends one panel: head iHead's weights aW (T, T) at (px, py). */
static void svgAppendPanel(sqlite3_str *pOut, const SvgLayout *L, int iLayer, int iHead,
                           const float *aW, char **azLabel, int px, int py) {
  int s = L->cell, T = L->T;
  int x0 = L->label, y0 = SVG_PANEL_TITLE + L->label; /* cells, in the panel */
  char zFill[8];
  sqlite3_str_appendf(pOut, "<g class=\"head\" data-layer=\"%d\" data-head=\"%d\" "
                      "transform=\"translate(%d,%d)\">\n", iLayer, iHead, px, py);
  sqlite3_str_appendf(pOut, "<text class=\"panel\" x=\"%d\" y=\"13\" font-size=\"12\" "
                      "font-weight=\"bold\">layer %d, head %d</text>\n", x0, iLayer, iHead);
  sqlite3_str_appendf(pOut, "<g font-size=\"%d\" fill=\"#333333\">\n", L->font);
  for (int q = 0; q < T; q++)
    sqlite3_str_appendf(pOut, "<text class=\"q\" x=\"%d\" y=\"%d\" dy=\"0.35em\" "
                        "text-anchor=\"end\">%s</text>\n", x0 - 4, y0 + q * s + s / 2,
                        azLabel[q]);
  for (int k = 0; k < T; k++)
    sqlite3_str_appendf(pOut, "<text class=\"k\" transform=\"translate(%d,%d) rotate(-90)\" "
                        "dy=\"0.35em\">%s</text>\n", x0 + k * s + s / 2, y0 - 4, azLabel[k]);
  sqlite3_str_appendall(pOut, "</g>\n");
  svgAppendMasked(pOut, L, x0, y0);
  sqlite3_str_appendf(pOut, "<g class=\"cells\" transform=\"translate(%d,%d) scale(%d)\" "
                      "shape-rendering=\"crispEdges\">\n", x0, y0, s);
  for (int q = 0; q < T; q++) {
    for (int k = 0; k <= q; k++) {
      double w = aW[(size_t)q * T + k];
      svgColour(w, zFill);
      sqlite3_str_appendf(pOut, "<rect x=\"%d\" y=\"%d\" width=\"1\" height=\"1\" "
                          "fill=\"%s\"><title>query %d: %s\nkey %d: %s\nweight: %.9g"
                          "</title></rect>\n", k, q, zFill, q, azLabel[q], k, azLabel[k], w);
    }
  }
  sqlite3_str_appendf(pOut, "</g>\n<rect class=\"frame\" x=\"%d\" y=\"%d\" width=\"%d\" "
                      "height=\"%d\" fill=\"none\" stroke=\"#999999\"/>\n</g>\n", x0, y0,
                      T * s, T * s);
}

/* Appends the legend: the colour bar with ticks, and the masked swatch. */
static void svgAppendLegend(sqlite3_str *pOut, const SvgLayout *L) {
  int H = SVG_LEGEND_H;
  sqlite3_str_appendf(pOut, "<g class=\"legend\" transform=\"translate(%d,%d)\" "
                      "font-size=\"11\" fill=\"#333333\">\n", L->legendX, SVG_HEADER);
  sqlite3_str_appendall(pOut, "<text x=\"0\" y=\"13\" font-weight=\"bold\">weight</text>\n");
  sqlite3_str_appendf(pOut, "<rect x=\"0\" y=\"%d\" width=\"14\" height=\"%d\" "
                      "fill=\"url(#gpt-attn-scale)\" stroke=\"#999999\"/>\n",
                      SVG_PANEL_TITLE, H);
  for (int i = 0; i <= 4; i++) {
    int y = SVG_PANEL_TITLE + H - H * i / 4;
    sqlite3_str_appendf(pOut, "<line x1=\"14\" x2=\"18\" y1=\"%d\" y2=\"%d\" "
                        "stroke=\"#666666\"/><text x=\"21\" y=\"%d\" dy=\"0.35em\">%s</text>\n",
                        y, y, y, i == 0 ? "0" : i == 1 ? "0.25" : i == 2 ? "0.5" :
                        i == 3 ? "0.75" : "1");
  }
  int y = SVG_PANEL_TITLE + H + 14;
  sqlite3_str_appendf(pOut, "<rect x=\"0\" y=\"%d\" width=\"14\" height=\"14\" "
                      "fill=\"url(#gpt-attn-masked)\" stroke=\"#999999\"/><text x=\"21\" "
                      "y=\"%d\" dy=\"0.35em\">masked (future)</text>\n</g>\n", y, y + 7);
}

/* The whole document: header, definitions, panels, legend. */
static void svgAppendDocument(sqlite3_str *pOut, const SvgLayout *L, const GptModel *m,
                              int iLayer, int iHead, int nPanel, const float *aProb,
                              char **azLabel) {
  sqlite3_str_appendf(pOut, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                      "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" data-layer=\"%d\" "
                      "data-tokens=\"%d\">\n<title>", L->width, L->height, L->width,
                      L->height, iLayer, L->T);
  sqlite3_str_appendall(pOut, "gpt_attention_svg: model ");
  svgAppendText(pOut, m->zName, (int)strlen(m->zName), 64, 0);
  if (iHead < 0) sqlite3_str_appendf(pOut, ", layer %d, all %d heads", iLayer, nPanel);
  else sqlite3_str_appendf(pOut, ", layer %d, head %d", iLayer, iHead);
  sqlite3_str_appendf(pOut, ", %d tokens</title>\n<defs>\n"
                      "<linearGradient id=\"gpt-attn-scale\" x1=\"0\" y1=\"1\" x2=\"0\" "
                      "y2=\"0\">\n", L->T);
  for (int i = 0; i < 9; i++)
    sqlite3_str_appendf(pOut, "<stop offset=\"%g\" stop-color=\"#%02x%02x%02x\"/>\n",
                        i / 8.0, aSvgScale[i][0], aSvgScale[i][1], aSvgScale[i][2]);
  sqlite3_str_appendall(pOut, "</linearGradient>\n"
                        "<pattern id=\"gpt-attn-masked\" width=\"6\" height=\"6\" "
                        "patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">"
                        "<rect width=\"6\" height=\"6\" fill=\"#eeeeee\"/>"
                        "<rect width=\"2\" height=\"6\" fill=\"#aaaaaa\"/></pattern>\n"
                        "</defs>\n<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n");
  sqlite3_str_appendf(pOut, "<text x=\"%d\" y=\"20\" font-size=\"14\" fill=\"#333333\">"
                      "Attention of model ", SVG_MARGIN);
  svgAppendText(pOut, m->zName, (int)strlen(m->zName), 64, 0);
  sqlite3_str_appendf(pOut, ", layer %d: how much each query (row) attends to each "
                      "key (column)</text>\n", iLayer);
  for (int i = 0; i < nPanel; i++) {
    int px = SVG_MARGIN + (i % L->nCol) * (L->panelW + SVG_GAP);
    int py = SVG_HEADER + (i / L->nCol) * (L->panelH + SVG_GAP);
    svgAppendPanel(pOut, L, iLayer, iHead < 0 ? i : iHead,
                   aProb + (size_t)i * L->T * L->T, azLabel, px, py);
  }
  svgAppendLegend(pOut, L);
  sqlite3_str_appendall(pOut, "</svg>\n");
}

/* gpt_attention_svg(text [, options]): see the header comment. */
static void gptAttentionSvgFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char zFunc[] = "gpt_attention_svg";
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  GptOptions o;
  GptModel *m = 0;
  GPTState *s = 0;
  SvgPass pass;
  SvgLayout L;
  int *aTok = 0, nTok = 0, nPanel = 0, nDoc = 0, rc;
  double labelEms = 1; /* the widest label, in ems */
  char **azLabel = 0, *zErr = 0, *zDoc = 0;
  sqlite3_str *pOut = 0;
  memset(&pass, 0, sizeof(pass));
  memset(&o, 0, sizeof(o));
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  rc = gptext_options_parse(db, zFunc, argc > 1 ? argv[1] : 0,
                            GPTOPT_MODEL | GPTOPT_SPECIAL | GPTOPT_TRUNCATE | GPTOPT_ATTN_GEN |
                            GPTOPT_SAMPLING | GPTOPT_THREADS | GPTOPT_LAYER_HEAD, &o, &zErr);
  if (rc == SQLITE_OK)
    rc = gptext_model_acquire(sqlite3_user_data(ctx), db, zFunc, o.zModel, 1, &m, &zErr);
  if (rc != SQLITE_OK) goto done;
  if (o.iLayer >= m->cfg.n_layer) {
    gptext_set_error(&zErr, "%s: model '%s': option \"layer\" is %d but the model has %d "
                     "layer%s (0 to %d)", zFunc, m->zName, o.iLayer, m->cfg.n_layer,
                     m->cfg.n_layer == 1 ? "" : "s", m->cfg.n_layer - 1);
    rc = SQLITE_ERROR;
    goto done;
  }
  if (o.iHead >= m->cfg.n_head) {
    gptext_set_error(&zErr, "%s: model '%s': option \"head\" is %d but the model has %d "
                     "query head%s (0 to %d, or \"all\")", zFunc, m->zName, o.iHead,
                     m->cfg.n_head, m->cfg.n_head == 1 ? "" : "s", m->cfg.n_head - 1);
    rc = SQLITE_ERROR;
    goto done;
  }
  rc = gptext_attention_sequence(sqlite3_user_data(ctx), db, m, zFunc, argv[0], &o, &aTok,
                                 &nTok, &zErr);
  if (rc != SQLITE_OK || nTok == 0) goto done; /* no tokens: NULL */
  nPanel = o.iHead < 0 ? m->cfg.n_head : 1;
  {
    sqlite3_int64 nCell = (sqlite3_int64)nPanel * nTok * (nTok + 1) / 2;
    if (nCell > SVG_MAX_CELLS) {
      gptext_set_error(&zErr, "%s: model '%s': %d head%s of %d tokens make %lld cells, more "
                       "than the limit of %d; draw one head, a shorter text or fewer "
                       "generated tokens", zFunc, m->zName, nPanel, nPanel == 1 ? "" : "s",
                       nTok, nCell, SVG_MAX_CELLS);
      rc = SQLITE_ERROR;
      goto done;
    }
  }

  /* the weights: (nPanel, T, T) floats, at most 8 MB under the cell limit */
  pass.db = db;
  pass.iLayer = o.iLayer;
  pass.iHead = o.iHead;
  pass.T = nTok;
  pass.nPanel = nPanel;
  pass.aProb = sqlite3_malloc64(sizeof(float) * (size_t)nPanel * nTok * nTok);
  pass.abGot = sqlite3_malloc64((size_t)nPanel);
  if (!pass.aProb || !pass.abGot) { rc = SQLITE_NOMEM; goto done; }
  memset(pass.aProb, 0, sizeof(float) * (size_t)nPanel * nTok * nTok);
  memset(pass.abGot, 0, (size_t)nPanel);
  rc = gptext_attention_begin(m, zFunc, aTok, nTok, &s, &zErr);
  if (rc != SQLITE_OK) goto done;
  {
    GPTForwardIO io;
    memset(&io, 0, sizeof(io));
    io.want_attention = svgWant;
    io.on_attention = svgKeep;
    io.should_stop = svgStop;
    io.ctx = &pass;
    for (int l = 0; rc == SQLITE_OK && l <= o.iLayer; l++)
      rc = gptext_attention_layer(m, zFunc, s, l, o.nThreads, &io, &zErr);
    if (rc != SQLITE_OK) goto done;
  }
  for (int i = 0; i < nPanel; i++) {
    if (!pass.abGot[i]) {
      gptext_set_error(&zErr, "%s: model '%s': the forward pass gave no attention for "
                       "layer %d, head %d", zFunc, m->zName, o.iLayer, o.iHead < 0 ? i : o.iHead);
      rc = SQLITE_ERROR;
      goto done;
    }
  }

  /* labels: each token's text escaped once, reused by every cell's title */
  azLabel = sqlite3_malloc64(sizeof(char *) * (size_t)nTok);
  if (!azLabel) { rc = SQLITE_NOMEM; goto done; }
  memset(azLabel, 0, sizeof(char *) * (size_t)nTok);
  for (int t = 0; t < nTok; t++) {
    int n = 0;
    const char *z = tok_token_bytes(m->pTok, aTok[t], &n);
    sqlite3_str *pLabel = sqlite3_str_new(db);
    double w = svgAppendText(pLabel, z, z ? n : 0, SVG_LABEL_CHARS, 1);
    if (w > labelEms) labelEms = w;
    azLabel[t] = sqlite3_str_finish(pLabel);
    if (!azLabel[t]) azLabel[t] = sqlite3_mprintf("");
    if (!azLabel[t]) { rc = SQLITE_NOMEM; goto done; }
  }
  svgLayout(&L, nTok, nPanel, labelEms);
  pOut = sqlite3_str_new(db);
  svgAppendDocument(pOut, &L, m, o.iLayer, o.iHead, nPanel, pass.aProb, azLabel);
  rc = sqlite3_str_errcode(pOut);
  nDoc = sqlite3_str_length(pOut);
  zDoc = sqlite3_str_finish(pOut);
  pOut = 0;
  if (rc == SQLITE_TOOBIG) {
    gptext_set_error(&zErr, "%s: model '%s': the document is longer than SQLite's length "
                     "limit (SQLITE_LIMIT_LENGTH, %d bytes); draw one head or a shorter text",
                     zFunc, m->zName, sqlite3_limit(db, SQLITE_LIMIT_LENGTH, -1));
    goto done;
  }
  if (rc != SQLITE_OK) goto done;
  gptext_result_text(ctx, zDoc, nDoc, sqlite3_free);
  zDoc = 0;

done:
  if (rc != SQLITE_OK) {
    if (!zErr) {
      if (rc == SQLITE_NOMEM && m) zErr = sqlite3_mprintf("%s: model '%s': out of memory",
                                                          zFunc, m->zName);
      else zErr = sqlite3_mprintf("%s: %s", zFunc, sqlite3_errstr(rc));
    }
    if (zErr) gptext_result_error(ctx, zErr);
    if (rc != SQLITE_ERROR || !zErr) sqlite3_result_error_code(ctx, rc);
  }
  sqlite3_free(zErr);
  sqlite3_free(zDoc);
  sqlite3_free(sqlite3_str_finish(pOut));
  for (int t = 0; azLabel && t < nTok; t++) sqlite3_free(azLabel[t]);
  sqlite3_free(azLabel);
  sqlite3_free(pass.aProb);
  sqlite3_free(pass.abGot);
  gpt_state_free(s);
  sqlite3_free(aTok);
  gptext_model_release(m);
  gptext_options_clear(&o);
}

/* Registers gpt_attention_svg with one and two arguments: DIRECTONLY (it
** runs the model) and not DETERMINISTIC ("generate" may sample). */
int gptext_register_svg(sqlite3 *db, GptConn *pConn) {
  int rc = SQLITE_OK;
  for (int nArg = 1; rc == SQLITE_OK && nArg <= 2; nArg++)
    rc = sqlite3_create_function(db, "gpt_attention_svg", nArg, SQLITE_UTF8 | SQLITE_DIRECTONLY,
                                 pConn, gptAttentionSvgFunc, 0, 0);
  return rc;
}
