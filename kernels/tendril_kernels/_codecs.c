/* The payload codecs' element loops (tendril.core.codecs), one pass each, the GIL released.
 *
 *   bf16_encode(src f32, dst u16)          round to nearest even; a NaN stays a quiet NaN
 *   bf16_decode(src u16, dst f32)          exact
 *   absmax_quantize(src f32, dst i8, scales f32, block, limit) -> bool
 *                                          per block: scale = absmax / limit (0: all zero),
 *                                          q = clip(rint(v / scale), -limit, limit);
 *                                          False (nothing usable written) when a value is NaN/Inf
 *   blockwise_decode(src i8, scales f32, block, dst f32)   v = float32(q) * scale
 *   pack_int4(src i8, dst u8)              value 2i in the low nibble of byte i
 *   unpack_int4(src u8, dst i8)            sign-extended nibbles, low first
 *   all_finite(src f32) -> bool            no NaN or Inf among the values
 *   sparse_encode(src f32, chunk, top, indices u16, codes u8, scales f32) -> bool
 *                                          per chunk the ``top`` largest |x| (ties: the lower
 *                                          index), sorted by |x| descending, zeros never kept:
 *                                          uint16 indices (0xFFFF: unused), 2-bit codes four to
 *                                          a byte, (low, high) magnitudes (codecs.sparse_encode);
 *                                          False (nothing usable written) when a value is NaN/Inf
 *
 * Each gives the same bytes as the numpy code in tendril.core.codecs (tests/unit/test_kernels.py
 * holds them to it): IEEE float32 division and multiplication, rintf in the default
 * round-to-nearest-even mode, no contraction (-ffp-contract=off), no -ffast-math.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* A C-contiguous buffer of ``obj`` whose items are ``itemsize`` bytes of one of ``formats``. */
static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *name, Py_ssize_t itemsize,
                      const char *const *formats, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous%s %s buffer", name, writable ? " writable" : "",
                     what);
        return -1;
    }
    int known = 0;
    for (const char *const *f = formats; *f != NULL && view->format != NULL; f++)
        if (strcmp(view->format, *f) == 0) known = 1;
    if (!known || view->itemsize != itemsize || view->ndim > 1) {
        PyErr_Format(PyExc_TypeError, "%s must be one-dimensional %s (got format %s, %d dimensions)", name, what,
                     view->format == NULL ? "?" : view->format, view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    if ((uintptr_t)view->buf % (uintptr_t)itemsize != 0) {
        PyErr_Format(PyExc_ValueError, "%s must start on a %zd-byte boundary", name, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static const char *const F32[] = {"f", "<f", "=f", NULL};
static const char *const U16[] = {"H", "<H", "=H", NULL};
static const char *const I8[] = {"b", "<b", "=b", NULL};
static const char *const U8[] = {"B", "<B", "=B", NULL};

#define GET(obj, view, writable, name, size, formats, what) \
    (get_buffer(obj, view, writable, name, size, formats, what) < 0)

static PyObject *bf16_encode(PyObject *self, PyObject *args) {
    PyObject *src_o, *dst_o;
    if (!PyArg_ParseTuple(args, "OO:bf16_encode", &src_o, &dst_o)) return NULL;
    Py_buffer src, dst;
    if (GET(src_o, &src, 0, "src", 4, F32, "float32")) return NULL;
    if (GET(dst_o, &dst, 1, "dst", 2, U16, "uint16")) {
        PyBuffer_Release(&src);
        return NULL;
    }
    Py_ssize_t n = src.len / 4;
    if (dst.len / 2 != n) {
        PyErr_SetString(PyExc_ValueError, "src and dst must hold as many values");
        PyBuffer_Release(&dst);
        PyBuffer_Release(&src);
        return NULL;
    }
    const uint32_t *bits = src.buf;
    uint16_t *out = dst.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint32_t b = bits[i];
        const int nan = (b & 0x7F800000u) == 0x7F800000u && (b & 0x007FFFFFu) != 0;
        const uint32_t rounded = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
        out[i] = (uint16_t)(nan ? ((b >> 16) | 0x0040u) : rounded);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    Py_RETURN_NONE;
}

static PyObject *bf16_decode(PyObject *self, PyObject *args) {
    PyObject *src_o, *dst_o;
    if (!PyArg_ParseTuple(args, "OO:bf16_decode", &src_o, &dst_o)) return NULL;
    Py_buffer src, dst;
    if (GET(src_o, &src, 0, "src", 2, U16, "uint16")) return NULL;
    if (GET(dst_o, &dst, 1, "dst", 4, F32, "float32")) {
        PyBuffer_Release(&src);
        return NULL;
    }
    Py_ssize_t n = src.len / 2;
    if (dst.len / 4 != n) {
        PyErr_SetString(PyExc_ValueError, "src and dst must hold as many values");
        PyBuffer_Release(&dst);
        PyBuffer_Release(&src);
        return NULL;
    }
    const uint16_t *in = src.buf;
    uint32_t *out = dst.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) out[i] = (uint32_t)in[i] << 16;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    Py_RETURN_NONE;
}

/* Blocks of ``block`` values: scale = absmax / lim, q = clip(rint(v / safe), -lim, lim). Returns
 * whether every value was finite (it stops at the first block holding a NaN or Inf). */
#define QUANTIZE_BODY                                                          \
    for (Py_ssize_t a = 0; a < n; a += block) {                                \
        const Py_ssize_t b = a + block < n ? a + block : n;                    \
        float absmax = 0.0f;                                                   \
        uint32_t bad = 0;                                                      \
        for (Py_ssize_t i = a; i < b; i++) {                                   \
            const float m = fabsf(v[i]);                                       \
            absmax = m > absmax ? m : absmax;                                  \
            bad |= (uint32_t)(!(m <= FLT_MAX));                                \
        }                                                                      \
        if (bad) return 0;                                                     \
        const float scale = absmax / lim;                                      \
        const float safe = scale > 0.0f ? scale : 1.0f;                        \
        s[a / block] = scale;                                                  \
        for (Py_ssize_t i = a; i < b; i++) {                                   \
            float r = rintf(v[i] / safe);                                      \
            r = r > lim ? lim : r;                                             \
            r = r < -lim ? -lim : r;                                           \
            q[i] = (int8_t)r;                                                  \
        }                                                                      \
    }                                                                          \
    return 1;

typedef int (*quantize_fn)(Py_ssize_t, Py_ssize_t, const float *restrict, int8_t *restrict, float *restrict, float);

static int quantize_base(Py_ssize_t n, Py_ssize_t block, const float *restrict v, int8_t *restrict q,
                         float *restrict s, float lim) {
    QUANTIZE_BODY
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_X86_DISPATCH 1
/* (AVX2 brings SSE4.1's roundps: rintf inlined and vectorized instead of a libm call per value) */
__attribute__((target("avx2"))) static int quantize_avx2(Py_ssize_t n, Py_ssize_t block, const float *restrict v,
                                                         int8_t *restrict q, float *restrict s, float lim) {
    QUANTIZE_BODY
}
#endif

static quantize_fn quantize_impl = quantize_base;

static PyObject *absmax_quantize(PyObject *self, PyObject *args) {
    PyObject *src_o, *dst_o, *scales_o;
    Py_ssize_t block;
    int limit;
    if (!PyArg_ParseTuple(args, "OOOni:absmax_quantize", &src_o, &dst_o, &scales_o, &block, &limit)) return NULL;
    if (block <= 0 || limit <= 0 || limit > 127) {
        PyErr_SetString(PyExc_ValueError, "block must be positive and limit in 1..127");
        return NULL;
    }
    Py_buffer src, dst, scales;
    if (GET(src_o, &src, 0, "src", 4, F32, "float32")) return NULL;
    if (GET(dst_o, &dst, 1, "dst", 1, I8, "int8")) {
        PyBuffer_Release(&src);
        return NULL;
    }
    if (GET(scales_o, &scales, 1, "scales", 4, F32, "float32")) {
        PyBuffer_Release(&dst);
        PyBuffer_Release(&src);
        return NULL;
    }
    Py_ssize_t n = src.len / 4;
    Py_ssize_t blocks = (n + block - 1) / block;
    if (dst.len != n || scales.len / 4 != blocks) {
        PyErr_SetString(PyExc_ValueError, "dst must hold as many values as src, scales one per block");
        PyBuffer_Release(&scales);
        PyBuffer_Release(&dst);
        PyBuffer_Release(&src);
        return NULL;
    }
    const float *v = src.buf;
    int8_t *q = dst.buf;
    float *s = scales.buf;
    int finite;
    Py_BEGIN_ALLOW_THREADS
    finite = quantize_impl(n, block, v, q, s, (float)limit);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&scales);
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    return PyBool_FromLong(finite);
}

static PyObject *blockwise_decode(PyObject *self, PyObject *args) {
    PyObject *src_o, *scales_o, *dst_o;
    Py_ssize_t block;
    if (!PyArg_ParseTuple(args, "OOnO:blockwise_decode", &src_o, &scales_o, &block, &dst_o)) return NULL;
    if (block <= 0) {
        PyErr_SetString(PyExc_ValueError, "block must be positive");
        return NULL;
    }
    Py_buffer src, scales, dst;
    if (GET(src_o, &src, 0, "src", 1, I8, "int8")) return NULL;
    if (GET(scales_o, &scales, 0, "scales", 4, F32, "float32")) {
        PyBuffer_Release(&src);
        return NULL;
    }
    if (GET(dst_o, &dst, 1, "dst", 4, F32, "float32")) {
        PyBuffer_Release(&scales);
        PyBuffer_Release(&src);
        return NULL;
    }
    Py_ssize_t n = src.len;
    if (dst.len / 4 != n || scales.len / 4 < (n + block - 1) / block) {
        PyErr_SetString(PyExc_ValueError, "dst must hold as many values as src, scales one per block");
        PyBuffer_Release(&dst);
        PyBuffer_Release(&scales);
        PyBuffer_Release(&src);
        return NULL;
    }
    const int8_t *q = src.buf;
    const float *s = scales.buf;
    float *out = dst.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t a = 0; a < n; a += block) {
        const Py_ssize_t b = a + block < n ? a + block : n;
        const float scale = s[a / block];
        for (Py_ssize_t i = a; i < b; i++) out[i] = (float)q[i] * scale;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dst);
    PyBuffer_Release(&scales);
    PyBuffer_Release(&src);
    Py_RETURN_NONE;
}

static PyObject *pack_int4(PyObject *self, PyObject *args) {
    PyObject *src_o, *dst_o;
    if (!PyArg_ParseTuple(args, "OO:pack_int4", &src_o, &dst_o)) return NULL;
    Py_buffer src, dst;
    if (GET(src_o, &src, 0, "src", 1, I8, "int8")) return NULL;
    if (GET(dst_o, &dst, 1, "dst", 1, U8, "uint8")) {
        PyBuffer_Release(&src);
        return NULL;
    }
    Py_ssize_t n = src.len;
    if (dst.len != (n + 1) / 2) {
        PyErr_SetString(PyExc_ValueError, "dst must hold (len(src) + 1) // 2 bytes");
        PyBuffer_Release(&dst);
        PyBuffer_Release(&src);
        return NULL;
    }
    const uint8_t *in = src.buf;
    uint8_t *out = dst.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n / 2; i++)
        out[i] = (uint8_t)((in[2 * i] & 0x0Fu) | ((in[2 * i + 1] & 0x0Fu) << 4));
    if (n % 2) out[n / 2] = (uint8_t)(in[n - 1] & 0x0Fu);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    Py_RETURN_NONE;
}

static PyObject *unpack_int4(PyObject *self, PyObject *args) {
    PyObject *src_o, *dst_o;
    if (!PyArg_ParseTuple(args, "OO:unpack_int4", &src_o, &dst_o)) return NULL;
    Py_buffer src, dst;
    if (GET(src_o, &src, 0, "src", 1, U8, "uint8")) return NULL;
    if (GET(dst_o, &dst, 1, "dst", 1, I8, "int8")) {
        PyBuffer_Release(&src);
        return NULL;
    }
    Py_ssize_t n = src.len;
    if (dst.len != 2 * n) {
        PyErr_SetString(PyExc_ValueError, "dst must hold 2 * len(src) values");
        PyBuffer_Release(&dst);
        PyBuffer_Release(&src);
        return NULL;
    }
    const uint8_t *in = src.buf;
    int8_t *out = dst.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        out[2 * i] = (int8_t)(((in[i] & 0x0Fu) ^ 8u)) - 8;
        out[2 * i + 1] = (int8_t)(((in[i] >> 4) ^ 8u)) - 8;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    Py_RETURN_NONE;
}

static PyObject *all_finite(PyObject *self, PyObject *args) {
    PyObject *src_o;
    if (!PyArg_ParseTuple(args, "O:all_finite", &src_o)) return NULL;
    Py_buffer src;
    if (GET(src_o, &src, 0, "src", 4, F32, "float32")) return NULL;
    const uint32_t *bits = src.buf;
    Py_ssize_t n = src.len / 4;
    int finite = 1;
    Py_BEGIN_ALLOW_THREADS
    /* Blocks of 4096 values: a branch-free test per value (all exponent bits set: Inf or NaN),
     * one early exit per block. */
    for (Py_ssize_t a = 0; a < n && finite; a += 4096) {
        const Py_ssize_t b = a + 4096 < n ? a + 4096 : n;
        uint32_t bad = 0;
        for (Py_ssize_t i = a; i < b; i++) bad |= (uint32_t)((bits[i] & 0x7F800000u) == 0x7F800000u);
        finite = bad == 0;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    return PyBool_FromLong(finite);
}

/* The kept values of one chunk: a min-heap of keys (|x| bits << 16 | 0xFFFF - index, unique per
 * value: the larger key is the larger |x|, then the lower index), the smallest at the root. */
static void sift_down(uint64_t *heap, int size, int at) {
    for (;;) {
        int child = 2 * at + 1;
        if (child >= size) return;
        if (child + 1 < size && heap[child + 1] < heap[child]) child++;
        if (heap[at] <= heap[child]) return;
        const uint64_t t = heap[at];
        heap[at] = heap[child];
        heap[child] = t;
        at = child;
    }
}

static void sift_up(uint64_t *heap, int at) {
    while (at > 0) {
        const int parent = (at - 1) / 2;
        if (heap[parent] <= heap[at]) return;
        const uint64_t t = heap[at];
        heap[at] = heap[parent];
        heap[parent] = t;
        at = parent;
    }
}

#define SPARSE_MAX_TOP 256
#define SPARSE_UNUSED 0xFFFFu
#define SPARSE_STRIDE 8 /* sample_floor looks at every 8th value */
#define SPARSE_BLOCK 16 /* values compared with the floor at once (vectorized) before any is looked at */

/* Keep ``key`` if it is among the ``k`` largest seen (a min-heap of ``*size`` keys); 1 once the
 * heap holds k, its root then the smallest kept. */
static inline int heap_keep(uint64_t *heap, int *size, int k, uint64_t key) {
    if (*size < k) {
        heap[*size] = key;
        sift_up(heap, (*size)++);
    } else if (key > heap[0]) {
        heap[0] = key;
        sift_down(heap, *size, 0);
    }
    return *size == k;
}

/* Offer value i of the chunk starting at a to the heap of the ``top`` largest keys so far;
 * returns 0 at a NaN/Inf (|x| bits at or above the exponent mask). */
static inline int offer(const uint32_t *bits, Py_ssize_t a, Py_ssize_t i, int top, uint64_t *heap, int *size,
                        uint32_t *floor_mag) {
    const uint32_t mag = bits[i] & 0x7FFFFFFFu;
    if (mag < *floor_mag) return 1;
    if (mag >= 0x7F800000u) return 0;
    const uint64_t key = ((uint64_t)mag << 16) | (uint64_t)(SPARSE_UNUSED - (uint32_t)(i - a));
    if (heap_keep(heap, size, top, key)) *floor_mag = (uint32_t)(heap[0] >> 16);
    return 1;
}

/* The heap of the ``top`` largest keys of [a, b) among values whose |x| bits are at least
 * ``floor_mag`` (>= 1: zeros are never kept); its size. *finite = 0 at a NaN/Inf. Blocks of
 * SPARSE_BLOCK values are first compared with the floor all at once: most hold none to look at. */
static int chunk_top(const uint32_t *bits, Py_ssize_t a, Py_ssize_t b, int top, uint32_t floor_mag, uint64_t *heap,
                     int *finite) {
    int size = 0;
    for (Py_ssize_t i = a; i < b; i += SPARSE_BLOCK) {
        const Py_ssize_t end = i + SPARSE_BLOCK < b ? i + SPARSE_BLOCK : b;
        if (end - i == SPARSE_BLOCK) {
            int any = 0;
            for (int j = 0; j < SPARSE_BLOCK; j++) any |= (bits[i + j] & 0x7FFFFFFFu) >= floor_mag;
            if (!any) continue;
        }
        for (Py_ssize_t k = i; k < end; k++)
            if (!offer(bits, a, k, top, heap, &size, &floor_mag)) {
                *finite = 0;
                return size;
            }
    }
    return size;
}

/* A guess at a floor below the chunk's ``top``-th largest |x|: the (top/4)-th largest |x| bits
 * among every SPARSE_STRIDE-th value (about rank 2 top of the chunk); 1 when the sample holds
 * fewer. Whether it held is known after chunk_top: the heap is full. */
static uint32_t sample_floor(const uint32_t *bits, Py_ssize_t a, Py_ssize_t b, int top) {
    const int k = top / 4;
    uint64_t heap[SPARSE_MAX_TOP / 4];
    int size = 0;
    uint32_t floor_mag = 1;
    for (Py_ssize_t i = a; i < b; i += SPARSE_STRIDE) {
        const uint32_t mag = bits[i] & 0x7FFFFFFFu;
        if (mag >= floor_mag && heap_keep(heap, &size, k, mag)) floor_mag = (uint32_t)heap[0];
    }
    return size == k ? floor_mag : 1;
}

static PyObject *sparse_encode(PyObject *self, PyObject *args) {
    PyObject *src_o, *idx_o, *codes_o, *scales_o;
    Py_ssize_t chunk, top;
    if (!PyArg_ParseTuple(args, "OnnOOO:sparse_encode", &src_o, &chunk, &top, &idx_o, &codes_o, &scales_o))
        return NULL;
    if (top < 4 || top % 4 != 0 || top > SPARSE_MAX_TOP || chunk < top || chunk > 32768) {
        PyErr_SetString(PyExc_ValueError, "top must be a multiple of 4 up to 256, chunk in [top, 32768]");
        return NULL;
    }
    Py_buffer src, idx, codes, scales;
    if (GET(src_o, &src, 0, "src", 4, F32, "float32")) return NULL;
    if (GET(idx_o, &idx, 1, "indices", 2, U16, "uint16")) {
        PyBuffer_Release(&src);
        return NULL;
    }
    if (GET(codes_o, &codes, 1, "codes", 1, U8, "uint8")) {
        PyBuffer_Release(&idx);
        PyBuffer_Release(&src);
        return NULL;
    }
    if (GET(scales_o, &scales, 1, "scales", 4, F32, "float32")) {
        PyBuffer_Release(&codes);
        PyBuffer_Release(&idx);
        PyBuffer_Release(&src);
        return NULL;
    }
    const Py_ssize_t n = src.len / 4;
    const Py_ssize_t chunks = (n + chunk - 1) / chunk;
    const Py_ssize_t tail = n % chunk;
    const Py_ssize_t slots = (n / chunk) * top + (tail < top ? tail : top);
    int finite = 1;
    if (idx.len / 2 != slots || codes.len != (slots + 3) / 4 || scales.len / 4 != 2 * chunks) {
        PyErr_SetString(PyExc_ValueError, "indices, codes and scales must be sized for the slots and chunks of src");
        finite = -1;
    } else {
        const uint32_t *bits = src.buf;
        const float *values = src.buf;
        uint16_t *index_out = idx.buf;
        uint8_t *code_out = codes.buf;
        float *scale_out = scales.buf;
        Py_BEGIN_ALLOW_THREADS
        uint64_t heap[SPARSE_MAX_TOP];
        memset(code_out, 0, (size_t)codes.len);
        for (Py_ssize_t c = 0; c < chunks && finite; c++) {
            const Py_ssize_t a = c * chunk, b = a + chunk < n ? a + chunk : n;
            /* NOTE: a floor guessed from a sample skips most of the chunk's values and heap updates.
             * Only when at least ``top`` values reach it is the heap the chunk's top; otherwise
             * the chunk is scanned again from floor 1. Either way the keys are exact. */
            const uint32_t guess = sample_floor(bits, a, b, (int)top);
            int size = chunk_top(bits, a, b, (int)top, guess, heap, &finite);
            if (finite && size < top && guess > 1) size = chunk_top(bits, a, b, (int)top, 1, heap, &finite);
            if (!finite) break;
            /* sorted by key descending: pop the heap from the smallest */
            uint64_t kept[SPARSE_MAX_TOP];
            const int m = size;
            for (int r = m - 1; r >= 0; r--) {
                kept[r] = heap[0];
                heap[0] = heap[--size];
                sift_down(heap, size, 0);
            }
            const int high = (m + 1) / 2;
            float hi = 0.0f, lo = 0.0f;
            if (m > 0) {
                const uint32_t h = (uint32_t)(kept[high / 2] >> 16);
                memcpy(&hi, &h, 4);
            }
            if (m > high) {
                const uint32_t l = (uint32_t)(kept[high + (m - high) / 2] >> 16);
                memcpy(&lo, &l, 4);
            }
            scale_out[2 * c] = lo;
            scale_out[2 * c + 1] = hi;
            const Py_ssize_t first = c * top;
            const Py_ssize_t count = (b - a) < top ? (b - a) : top; /* the chunk's slots */
            for (Py_ssize_t r = 0; r < count; r++) {
                const Py_ssize_t slot = first + r;
                if (r < m) {
                    const uint32_t j = SPARSE_UNUSED - (uint32_t)(kept[r] & 0xFFFFu);
                    const uint8_t code = (uint8_t)((r < high ? 2u : 0u) | (values[a + j] < 0.0f ? 1u : 0u));
                    index_out[slot] = (uint16_t)j;
                    code_out[slot / 4] |= (uint8_t)(code << (2 * (slot % 4)));
                } else {
                    index_out[slot] = SPARSE_UNUSED;
                }
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&scales);
    PyBuffer_Release(&codes);
    PyBuffer_Release(&idx);
    PyBuffer_Release(&src);
    if (finite < 0) return NULL;
    return PyBool_FromLong(finite);
}

static PyMethodDef methods[] = {
    {"all_finite", all_finite, METH_VARARGS, "all_finite(src) -> whether no float32 value is NaN or Inf"},
    {"bf16_encode", bf16_encode, METH_VARARGS, "bf16_encode(src, dst): float32 -> bf16 bits, nearest even"},
    {"bf16_decode", bf16_decode, METH_VARARGS, "bf16_decode(src, dst): bf16 bits -> float32"},
    {"absmax_quantize", absmax_quantize, METH_VARARGS,
     "absmax_quantize(src, dst, scales, block, limit) -> all finite: blockwise absmax int8/int4 values"},
    {"blockwise_decode", blockwise_decode, METH_VARARGS, "blockwise_decode(src, scales, block, dst): float32(q) * scale"},
    {"pack_int4", pack_int4, METH_VARARGS, "pack_int4(src, dst): two values in [-8, 7] per byte, low nibble first"},
    {"unpack_int4", unpack_int4, METH_VARARGS, "unpack_int4(src, dst): bytes -> sign-extended nibbles"},
    {"sparse_encode", sparse_encode, METH_VARARGS,
     "sparse_encode(src, chunk, top, indices, codes, scales) -> all finite: chunk-wise top-k, 2-bit codes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_codecs", NULL, -1, methods};

PyMODINIT_FUNC PyInit__codecs(void) {
#ifdef HAVE_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) quantize_impl = quantize_avx2;
#endif
    return PyModule_Create(&module);
}
