/* The parameter server's arithmetic on float32 buffers, element by element, in one pass.
 *
 * nesterov(): torch.optim.SGD(nesterov=True)'s step on the server's accumulator, bit for bit:
 *
 *     g   = acc / W                         (the weighted mean pseudo-gradient)
 *     buf = g                 (first step)  or  fl(fl(m * mu) + g)   (mul_ then add_)
 *     d   = fma(buf, mu, g)                 (grad.add(buf, alpha=mu): one rounding)
 *     t   = fma(d, -lr, theta)              (param.add_(d, alpha=-lr): one rounding)
 *     u   = fl(t - theta)                   (the update the workers apply: theta + u)
 *     acc = buf                             (the accumulator becomes the momentum buffer)
 *
 * fold(): acc = fl(acc + fl(w * delta)), or fl(0 + fl(w * delta)) for the first push.
 *
 * NOTE: the module is compiled with -ffp-contract=off, so a*b + c written out rounds twice, as
 * torch's mul_/add_ and numpy do; fmaf() is the one rounding torch's vectorized add(alpha=)
 * kernels make (vfmadd on AVX2). The loops exist twice: compiled for AVX2+FMA (hardware fmaf,
 * vectorized) and for the baseline x86-64/other targets (libm's fmaf, exact everywhere); the
 * module picks one at import. No -ffast-math: subnormals stay, as torch keeps them.
 * tendril.paramserver.outer holds the numpy reference these loops are tested against.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define NESTEROV_LOOPS                                                   \
    if (mom == NULL) {                                                   \
        for (Py_ssize_t i = 0; i < n; i++) {                             \
            const float g = acc[i] / w;                                  \
            const float d = fmaf(g, mu, g);                              \
            const float t = fmaf(d, neg_lr, theta[i]);                   \
            update[i] = t - theta[i];                                    \
            acc[i] = g;                                                  \
        }                                                                \
    } else {                                                             \
        for (Py_ssize_t i = 0; i < n; i++) {                             \
            const float g = acc[i] / w;                                  \
            const float scaled = mom[i] * mu;                            \
            const float buf = scaled + g;                                \
            const float d = fmaf(buf, mu, g);                            \
            const float t = fmaf(d, neg_lr, theta[i]);                   \
            update[i] = t - theta[i];                                    \
            acc[i] = buf;                                                \
        }                                                                \
    }

#define FOLD_LOOPS                                                       \
    if (first) {                                                         \
        for (Py_ssize_t i = 0; i < n; i++) {                             \
            const float product = w * delta[i];                          \
            acc[i] = 0.0f + product;                                     \
        }                                                                \
    } else {                                                             \
        for (Py_ssize_t i = 0; i < n; i++) {                             \
            const float product = w * delta[i];                          \
            acc[i] = acc[i] + product;                                   \
        }                                                                \
    }

typedef void (*nesterov_fn)(Py_ssize_t, const float *restrict, const float *restrict, float *restrict,
                            float *restrict, float, float, float);
typedef void (*fold_fn)(Py_ssize_t, float *restrict, const float *restrict, float, int);

static void nesterov_base(Py_ssize_t n, const float *restrict theta, const float *restrict mom,
                          float *restrict acc, float *restrict update, float w, float neg_lr, float mu) {
    NESTEROV_LOOPS
}

static void fold_base(Py_ssize_t n, float *restrict acc, const float *restrict delta, float w, int first) {
    FOLD_LOOPS
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_X86_DISPATCH 1
__attribute__((target("avx2,fma"))) static void nesterov_avx2(Py_ssize_t n, const float *restrict theta,
                                                               const float *restrict mom, float *restrict acc,
                                                               float *restrict update, float w, float neg_lr,
                                                               float mu) {
    NESTEROV_LOOPS
}

__attribute__((target("avx2,fma"))) static void fold_avx2(Py_ssize_t n, float *restrict acc,
                                                           const float *restrict delta, float w, int first) {
    FOLD_LOOPS
}
#endif

static nesterov_fn nesterov_impl = nesterov_base;
static fold_fn fold_impl = fold_base;
static const char *variant = "baseline";

/* A C-contiguous one-dimensional float32 buffer of ``obj`` (writable when asked). */
static int get_f32(PyObject *obj, Py_buffer *view, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous%s float32 buffer", name, writable ? " writable" : "");
        return -1;
    }
    const char *f = view->format;
    int is_f32 = view->itemsize == 4 && f != NULL &&
                 (strcmp(f, "f") == 0 || strcmp(f, "<f") == 0 || strcmp(f, "=f") == 0);
    if (!is_f32 || view->ndim > 1) {
        PyErr_Format(PyExc_TypeError, "%s must be one-dimensional float32 (got format %s, %d dimensions)", name,
                     f == NULL ? "?" : f, view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    if ((uintptr_t)view->buf % sizeof(float) != 0) {
        PyErr_Format(PyExc_ValueError, "%s must start on a 4-byte boundary (a float32 array's own memory)", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int overlap(const Py_buffer *a, const Py_buffer *b) {
    const char *a0 = a->buf, *b0 = b->buf;
    return a0 < b0 + b->len && b0 < a0 + a->len;
}

PyDoc_STRVAR(nesterov_doc,
             "nesterov(theta, momentum, acc, update, weight, lr, mu)\n--\n\n"
             "One outer Nesterov step as torch.optim.SGD(nesterov=True) takes it, bit for bit:\n"
             "acc (the weighted sum of pushes) becomes the new momentum buffer, update receives\n"
             "u = float32(theta_torch - theta). momentum None: the first step. Every buffer is\n"
             "float32 of one length; acc and update are written. Releases the GIL.");

static PyObject *nesterov(PyObject *self, PyObject *args) {
    PyObject *theta_o, *mom_o, *acc_o, *update_o;
    float weight, lr, mu;
    if (!PyArg_ParseTuple(args, "OOOOfff:nesterov", &theta_o, &mom_o, &acc_o, &update_o, &weight, &lr, &mu))
        return NULL;
    Py_buffer theta, mom, acc, update;
    int have_mom = mom_o != Py_None;
    if (get_f32(theta_o, &theta, 0, "theta") < 0) return NULL;
    if (have_mom && get_f32(mom_o, &mom, 0, "momentum") < 0) goto fail_theta;
    if (get_f32(acc_o, &acc, 1, "acc") < 0) goto fail_mom;
    if (get_f32(update_o, &update, 1, "update") < 0) goto fail_acc;
    if (theta.len != acc.len || update.len != acc.len || (have_mom && mom.len != acc.len)) {
        PyErr_SetString(PyExc_ValueError, "theta, momentum, acc and update must hold as many values each");
        goto fail_all;
    }
    if (overlap(&acc, &update) || overlap(&acc, &theta) || overlap(&update, &theta) ||
        (have_mom && (overlap(&acc, &mom) || overlap(&update, &mom)))) {
        PyErr_SetString(PyExc_ValueError, "acc and update must not overlap each other or theta or momentum");
        goto fail_all;
    }
    Py_ssize_t n = acc.len / 4;
    const float *m = have_mom ? (const float *)mom.buf : NULL;
    Py_BEGIN_ALLOW_THREADS
    nesterov_impl(n, (const float *)theta.buf, m, (float *)acc.buf, (float *)update.buf, weight, -lr, mu);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&update);
    PyBuffer_Release(&acc);
    if (have_mom) PyBuffer_Release(&mom);
    PyBuffer_Release(&theta);
    Py_RETURN_NONE;
fail_all:
    PyBuffer_Release(&update);
fail_acc:
    PyBuffer_Release(&acc);
fail_mom:
    if (have_mom) PyBuffer_Release(&mom);
fail_theta:
    PyBuffer_Release(&theta);
    return NULL;
}

PyDoc_STRVAR(fold_doc,
             "fold(acc, delta, weight, first)\n--\n\n"
             "acc = acc + float32(weight * delta), two roundings as numpy's multiply then add;\n"
             "first: acc = 0 + float32(weight * delta), acc's bytes never read. Releases the GIL.");

static PyObject *fold(PyObject *self, PyObject *args) {
    PyObject *acc_o, *delta_o;
    float weight;
    int first;
    if (!PyArg_ParseTuple(args, "OOfp:fold", &acc_o, &delta_o, &weight, &first)) return NULL;
    Py_buffer acc, delta;
    if (get_f32(acc_o, &acc, 1, "acc") < 0) return NULL;
    if (get_f32(delta_o, &delta, 0, "delta") < 0) {
        PyBuffer_Release(&acc);
        return NULL;
    }
    if (acc.len != delta.len || overlap(&acc, &delta)) {
        PyErr_SetString(PyExc_ValueError, "acc and delta must hold as many values and not overlap");
        PyBuffer_Release(&delta);
        PyBuffer_Release(&acc);
        return NULL;
    }
    Py_ssize_t n = acc.len / 4;
    Py_BEGIN_ALLOW_THREADS
    fold_impl(n, (float *)acc.buf, (const float *)delta.buf, weight, first);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&delta);
    PyBuffer_Release(&acc);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"nesterov", nesterov, METH_VARARGS, nesterov_doc},
    {"fold", fold, METH_VARARGS, fold_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_outer", NULL, -1, methods};

PyMODINIT_FUNC PyInit__outer(void) {
#ifdef HAVE_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        nesterov_impl = nesterov_avx2;
        fold_impl = fold_avx2;
        variant = "avx2+fma";
    }
#endif
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddStringConstant(m, "VARIANT", variant) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
