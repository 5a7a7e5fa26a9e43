/* Two byte loops of a photo build, in one pass each (prebake/native.py says when they are used; without a C
 * compiler prebake builds and runs the same, with numpy and Pillow doing them).
 *
 *   planes(src, out, pixels, bands): pixels of 4 bytes each (Pillow's storage of RGB and RGBA images) into `bands`
 *       planes of `pixels` bytes each, one after the other in `out`: the image channels first.
 *   u8_stats(buffer): (min, max, sum) of the bytes of a buffer.
 *
 * `src` is a bytes-like object of pixels * 4 bytes, or the "arrow_array" capsule of an Arrow C data interface
 * export of such pixels (Pillow's Image.__arrow_c_array__: a fixed-size list of 4 uint8 per pixel), read in
 * place. What they save: a build of benchmarks/realdata.py's photos against the tree before them (--baseline),
 * in docs/getting-started.md.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define PREBAKE_X86 1
#include <emmintrin.h>
#include <tmmintrin.h>
#endif

/* The Arrow C data interface's array (arrow.apache.org/docs/format/CDataInterface.html): a stable ABI. */
struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

static void planes_scalar(const uint8_t *px, Py_ssize_t from, Py_ssize_t n, uint8_t *out, int bands) {
    for (int b = 0; b < bands; b++) {
        uint8_t *o = out + (Py_ssize_t)b * n;
        const uint8_t *p = px + b;
        for (Py_ssize_t i = from; i < n; i++) {
            o[i] = p[4 * i];
        }
    }
}

#ifdef PREBAKE_X86
/* 16 pixels a step: each 16-byte load shuffled to [4 x band 0 | 4 x band 1 | 4 x band 2 | 4 x band 3], then the
 * four loads' 32-bit lanes transposed: 16 bytes of each band. */
__attribute__((target("ssse3"))) static Py_ssize_t planes_ssse3(const uint8_t *px, Py_ssize_t n, uint8_t *out,
                                                                 int bands) {
    const __m128i shuffle = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    uint8_t *o0 = out, *o1 = out + n, *o2 = out + 2 * n, *o3 = out + 3 * n;
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i *s = (const __m128i *)(px + 4 * i);
        __m128i a = _mm_shuffle_epi8(_mm_loadu_si128(s), shuffle);
        __m128i b = _mm_shuffle_epi8(_mm_loadu_si128(s + 1), shuffle);
        __m128i c = _mm_shuffle_epi8(_mm_loadu_si128(s + 2), shuffle);
        __m128i d = _mm_shuffle_epi8(_mm_loadu_si128(s + 3), shuffle);
        __m128i ab_lo = _mm_unpacklo_epi32(a, b), ab_hi = _mm_unpackhi_epi32(a, b);
        __m128i cd_lo = _mm_unpacklo_epi32(c, d), cd_hi = _mm_unpackhi_epi32(c, d);
        _mm_storeu_si128((__m128i *)(o0 + i), _mm_unpacklo_epi64(ab_lo, cd_lo));
        _mm_storeu_si128((__m128i *)(o1 + i), _mm_unpackhi_epi64(ab_lo, cd_lo));
        _mm_storeu_si128((__m128i *)(o2 + i), _mm_unpacklo_epi64(ab_hi, cd_hi));
        if (bands == 4) {
            _mm_storeu_si128((__m128i *)(o3 + i), _mm_unpackhi_epi64(ab_hi, cd_hi));
        }
    }
    return i;
}
#endif

/* The pixels of an Arrow export of 4-byte pixels, or NULL with an exception set. */
static const uint8_t *arrow_pixels(PyObject *capsule, Py_ssize_t pixels) {
    struct ArrowArray *a = (struct ArrowArray *)PyCapsule_GetPointer(capsule, "arrow_array");
    if (a == NULL) {
        return NULL;
    }
    if (a->release == NULL || a->n_children != 1 || a->children == NULL || a->length != pixels
        || a->null_count != 0 || a->offset < 0 || a->offset > PY_SSIZE_T_MAX / 4 - pixels) {
        PyErr_SetString(PyExc_ValueError, "the Arrow array is not one list of 4 bytes per pixel");
        return NULL;
    }
    struct ArrowArray *c = a->children[0];
    if (c == NULL || c->n_buffers != 2 || c->buffers == NULL || c->buffers[1] == NULL || c->null_count != 0
        || c->offset < 0 || c->length < 4 * (a->offset + pixels)) {
        PyErr_SetString(PyExc_ValueError, "the Arrow array's values are not 4 bytes per pixel");
        return NULL;
    }
    return (const uint8_t *)c->buffers[1] + c->offset + 4 * a->offset;
}

static PyObject *planes(PyObject *self, PyObject *args) {
    PyObject *src;
    Py_buffer out, in = {0};
    Py_ssize_t pixels;
    int bands;
    if (!PyArg_ParseTuple(args, "Ow*ni", &src, &out, &pixels, &bands)) {
        return NULL;
    }
    const uint8_t *px = NULL;
    /* pixels * 4 must not overflow: every length below is checked against it */
    if (pixels < 0 || pixels > PY_SSIZE_T_MAX / 4 || bands < 1 || bands > 4 || out.len != pixels * bands) {
        PyErr_Format(PyExc_ValueError, "planes: %zd bytes out for %zd pixels of %d bands", out.len, pixels, bands);
        goto fail;
    }
    if (PyCapsule_CheckExact(src)) {
        px = arrow_pixels(src, pixels);
    } else if (PyObject_GetBuffer(src, &in, PyBUF_SIMPLE) == 0) {
        if (in.len != 4 * pixels) {
            PyErr_Format(PyExc_ValueError, "planes: %zd bytes in for %zd pixels of 4 bytes", in.len, pixels);
        } else {
            px = (const uint8_t *)in.buf;
        }
    }
    if (px == NULL) {
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t done = 0;
#ifdef PREBAKE_X86
    if (bands >= 3 && __builtin_cpu_supports("ssse3")) {
        done = planes_ssse3(px, pixels, (uint8_t *)out.buf, bands);
    }
#endif
    planes_scalar(px, done, pixels, (uint8_t *)out.buf, bands);
    Py_END_ALLOW_THREADS
    if (in.obj != NULL) {
        PyBuffer_Release(&in);
    }
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
fail:
    if (in.obj != NULL) {
        PyBuffer_Release(&in);
    }
    PyBuffer_Release(&out);
    return NULL;
}

static PyObject *u8_stats(PyObject *self, PyObject *arg) {
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    const uint8_t *p = (const uint8_t *)in.buf;
    Py_ssize_t n = in.len, i = 0;
    uint64_t sum = 0;
    unsigned lo = 255, hi = 0;
    Py_BEGIN_ALLOW_THREADS
#ifdef PREBAKE_X86
    __m128i acc = _mm_setzero_si128(), mn = _mm_set1_epi8((char)0xFF), mx = _mm_setzero_si128();
    const __m128i zero = _mm_setzero_si128();
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        acc = _mm_add_epi64(acc, _mm_sad_epu8(v, zero)); /* two 64-bit sums of 8 bytes each */
        mn = _mm_min_epu8(mn, v);
        mx = _mm_max_epu8(mx, v);
    }
    uint64_t sums[2];
    uint8_t mins[16], maxs[16];
    _mm_storeu_si128((__m128i *)sums, acc);
    _mm_storeu_si128((__m128i *)mins, mn);
    _mm_storeu_si128((__m128i *)maxs, mx);
    sum = sums[0] + sums[1];
    if (i) {
        for (int k = 0; k < 16; k++) {
            lo = mins[k] < lo ? mins[k] : lo;
            hi = maxs[k] > hi ? maxs[k] : hi;
        }
    }
#endif
    for (; i < n; i++) {
        sum += p[i];
        lo = p[i] < lo ? p[i] : lo;
        hi = p[i] > hi ? p[i] : hi;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "u8_stats: an empty buffer has no minimum");
        return NULL;
    }
    return Py_BuildValue("IIK", lo, hi, (unsigned long long)sum);
}

static PyMethodDef methods[] = {
    {"planes", planes, METH_VARARGS, "planes(src, out, pixels, bands): 4-byte pixels into band planes."},
    {"u8_stats", u8_stats, METH_O, "u8_stats(buffer) -> (min, max, sum) of its bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "Byte loops of a photo build.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
