/* Multipart receives and sends on pyzmq sockets in one C call each: the bus's hot path.
 *
 * pyzmq spends more CPU per frame in Python (a call, flag objects, a Frame, a more-flag check)
 * than libzmq spends moving it; a router or a subscriber handles several frames a message. This
 * module does what core/bus/fastio.py's pure-Python helpers do, with the same semantics, in one
 * C call a message (or a batch of messages):
 *
 *   recv_frames(sock, flags)            -> list[bytes]          one whole multipart message
 *   recv_messages(sock, limit, keep=-1, max_bytes=-1)
 *                                       -> list[list[bytes]]    up to `limit` waiting messages, never blocks
 *                                                               (keep >= 0: frames after the first `keep`
 *                                                               come as b"", not copied; max_bytes >= 0: no
 *                                                               message starts once the batch holds that many)
 *   send_frames(sock, frames, flags)    -> None                 one multipart message
 *   send_many(sock, messages)           -> int                  whole messages, GIL released for the batch
 *   readable(sock)                      -> bool                 a whole message waits (ZMQ_EVENTS)
 *   track(batch, start, ...)            -> int                  a subscriber's sequence checks (below)
 *   sample(sock, limit, valid, is_valid) -> (n, dict, list, int) the pub/sub monitor's drain (below)
 *
 * `sock` is a pyzmq socket (its `underlying` handle is read) or that handle as an int. Errors are
 * raised as pyzmq raises them (zmq.Again, zmq.ContextTerminated, zmq.ZMQError), through
 * zmq.error._check_rc. A blocking call releases the GIL while it waits and retries after EINTR
 * once Python's signal handlers have run.
 *
 * libzmq is not linked: the module finds the libzmq that pyzmq has already loaded in this process
 * and looks its functions up there, so both use one library and one context: through pyzmq's own
 * backend module when `init(path)` is given its file (dlsym then resolves in the libraries that
 * module was linked with), otherwise the first libzmq loaded (dl_iterate_phdr). `init()` returns
 * the libzmq version; until it has succeeded every call raises.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <string.h>

/* libzmq 4.x's message type: 64 opaque bytes, pointer-aligned (zmq.h). */
typedef struct {
    unsigned char _[64];
} __attribute__((aligned(sizeof(void *)))) fz_msg_t;

#define FZ_DONTWAIT 1
#define FZ_SNDMORE 2
#define FZ_EVENTS 15
#define FZ_POLLIN 1

static int (*z_msg_init)(fz_msg_t *);
static int (*z_msg_recv)(fz_msg_t *, void *, int);
static int (*z_msg_close)(fz_msg_t *);
static void *(*z_msg_data)(fz_msg_t *);
static size_t (*z_msg_size)(const fz_msg_t *);
static int (*z_msg_more)(const fz_msg_t *);
static int (*z_send)(void *, const void *, size_t, int);
static int (*z_getsockopt)(void *, int, void *, size_t *);
static int (*z_errno)(void);
static void (*z_version)(int *, int *, int *);

static PyObject *check_rc = NULL; /* zmq.error._check_rc */
static PyObject *str_underlying = NULL;
static int ready = 0;

/* ------------------------------------------------------------------ errors */
static PyObject *raise_errno(int err) {
    PyObject *r = PyObject_CallFunction(check_rc, "ii", -1, err);
    if (r != NULL) { /* _check_rc did not raise: never expected for rc -1 */
        Py_DECREF(r);
        PyErr_Format(PyExc_RuntimeError, "libzmq error %d", err);
    }
    return NULL;
}

static void *handle_of(PyObject *sock) {
    PyObject *h;
    void *p;
    if (PyLong_Check(sock)) {
        p = PyLong_AsVoidPtr(sock);
    } else {
        h = PyObject_GetAttr(sock, str_underlying);
        if (h == NULL) return NULL;
        p = PyLong_AsVoidPtr(h);
        Py_DECREF(h);
    }
    if (p == NULL && !PyErr_Occurred()) raise_errno(ENOTSOCK); /* a closed socket */
    return p;
}

#define NEED_READY                                                                      \
    if (!ready) {                                                                       \
        PyErr_SetString(PyExc_RuntimeError, "_fastzmq.init() has not found libzmq");    \
        return NULL;                                                                    \
    }

/* ------------------------------------------------------------------ receive */
/* One libzmq send or receive of a frame, as an operation `call` can retry. */
typedef int (*fz_op)(void *h, void *arg, int flags);

static int op_recv(void *h, void *arg, int flags) { return z_msg_recv((fz_msg_t *)arg, h, flags); }

typedef struct {
    const char *data;
    size_t len;
} fz_buf;

static int op_send(void *h, void *arg, int flags) {
    fz_buf *b = (fz_buf *)arg;
    return z_send(h, b->data, b->len, flags);
}

/* Run `op` with `flags`: 0 on success, else the errno. Where `flags` allows blocking, one
 * non-blocking try goes first (a frame that can move at once costs no GIL round trip), then the
 * call waits with the GIL released. EINTR is retried; with `run_handlers`, after Python's signal
 * handlers ran, and a handler that raised makes this return -1 with the exception set. Without it
 * (a frame after a message's first: a handler's exception there would leave half a message open)
 * the handlers run once the message is complete, at the interpreter's next check. */
static int call(fz_op op, void *h, void *arg, int flags, int run_handlers) {
    int rc = op(h, arg, flags | FZ_DONTWAIT);
    if (rc >= 0) return 0;
    int err = z_errno();
    if (err != EAGAIN && err != EINTR) return err;
    if (err == EAGAIN && (flags & FZ_DONTWAIT)) return err;
    if (err == EINTR && run_handlers && PyErr_CheckSignals() < 0) return -1;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        rc = op(h, arg, flags);
        err = rc < 0 ? z_errno() : 0;
        Py_END_ALLOW_THREADS
        if (rc >= 0) return 0;
        if (err != EINTR) return err;
        if (run_handlers && PyErr_CheckSignals() < 0) return -1;
    }
}

/* Receive one whole multipart message as a new list of bytes, or NULL with *err set (0: a Python
 * exception is set). Frames after the first never wait: libzmq delivers a message's frames together.
 * A failure after the first frame (a MemoryError copying a large frame, say) drops the rest of the
 * message before returning, so the next receive starts at the next message, not at this one's tail. */
static PyObject *empty_bytes = NULL;

/* Receive the frame after `msg` without waiting (EINTR retried: the frame is already queued). */
static int recv_more(void *h, fz_msg_t *msg) {
    for (;;) {
        if (z_msg_recv(msg, h, FZ_DONTWAIT) >= 0) return 0;
        int e = z_errno();
        if (e != EINTR) return e;
    }
}

/* Receive and drop the frames that follow `msg` in its message (the tail of a failed receive). */
static void discard_rest(void *h, fz_msg_t *msg) {
    while (z_msg_more(msg)) {
        if (recv_more(h, msg) != 0) return;
    }
}

static PyObject *recv_message(void *h, fz_msg_t *msg, int flags, Py_ssize_t keep, Py_ssize_t *bytes, int *err) {
    int e = call(op_recv, h, msg, flags, 1);
    if (e != 0) {
        *err = e < 0 ? 0 : e;
        return NULL;
    }
    PyObject *parts = PyList_New(0);
    if (parts == NULL) {
        discard_rest(h, msg);
        *err = 0;
        return NULL;
    }
    for (Py_ssize_t i = 0;; i++) {
        PyObject *b;
        if (keep >= 0 && i >= keep) {
            b = empty_bytes; /* a frame the caller does not read: counted, not copied */
            Py_INCREF(b);
        } else {
            b = PyBytes_FromStringAndSize((const char *)z_msg_data(msg), (Py_ssize_t)z_msg_size(msg));
            if (bytes != NULL) *bytes += (Py_ssize_t)z_msg_size(msg);
        }
        if (b == NULL || PyList_Append(parts, b) < 0) {
            Py_XDECREF(b);
            Py_DECREF(parts);
            discard_rest(h, msg);
            *err = 0;
            return NULL;
        }
        Py_DECREF(b);
        if (!z_msg_more(msg)) return parts;
        if ((e = recv_more(h, msg)) != 0) {
            *err = e;
            Py_DECREF(parts);
            return NULL;
        }
    }
}

static PyObject *fz_recv_frames(PyObject *self, PyObject *args) {
    PyObject *sock;
    int flags = 0, err = 0;
    NEED_READY
    if (!PyArg_ParseTuple(args, "O|i:recv_frames", &sock, &flags)) return NULL;
    void *h = handle_of(sock);
    if (h == NULL) return NULL;
    fz_msg_t msg;
    z_msg_init(&msg);
    PyObject *parts = recv_message(h, &msg, flags, -1, NULL, &err);
    z_msg_close(&msg);
    if (parts == NULL && err != 0) return raise_errno(err);
    return parts;
}

static PyObject *fz_recv_messages(PyObject *self, PyObject *args) {
    PyObject *sock;
    Py_ssize_t limit, keep = -1, max_bytes = -1, bytes = 0;
    int err = 0;
    NEED_READY
    if (!PyArg_ParseTuple(args, "On|nn:recv_messages", &sock, &limit, &keep, &max_bytes)) return NULL;
    void *h = handle_of(sock);
    if (h == NULL) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    fz_msg_t msg;
    z_msg_init(&msg);
    for (Py_ssize_t i = 0; i < limit; i++) {
        if (max_bytes >= 0 && bytes >= max_bytes) break; /* the batch holds enough: the rest stays queued */
        PyObject *parts = recv_message(h, &msg, FZ_DONTWAIT, keep, &bytes, &err);
        if (parts == NULL) {
            if (err == EAGAIN) break; /* drained: no exception for the normal end */
            z_msg_close(&msg);
            Py_DECREF(out);
            return err != 0 ? raise_errno(err) : NULL;
        }
        int rc = PyList_Append(out, parts);
        Py_DECREF(parts);
        if (rc < 0) {
            z_msg_close(&msg);
            Py_DECREF(out);
            return NULL;
        }
    }
    z_msg_close(&msg);
    return out;
}

/* ------------------------------------------------------------------ send */
#define FZ_STACK_FRAMES 16

/* Send `frames` as one multipart message. The sequence is snapshot into a tuple (which holds a
 * reference to every frame) and every frame's bytes are acquired before the first is sent: a frame
 * that is not bytes-like, or a buffer that cannot be read as contiguous bytes, raises before
 * anything goes (never half a message), and a signal handler or another thread that changes the
 * caller's list while a send waits cannot free a frame libzmq is about to copy. */
static PyObject *fz_send_frames(PyObject *self, PyObject *args) {
    PyObject *sock, *frames;
    int flags = 0;
    NEED_READY
    if (!PyArg_ParseTuple(args, "OO|i:send_frames", &sock, &frames, &flags)) return NULL;
    void *h = handle_of(sock);
    if (h == NULL) return NULL;
    PyObject *seq = PySequence_Tuple(frames); /* a tuple is returned as is */
    if (seq == NULL) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    if (n == 0) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "send_frames: no frames");
        return NULL;
    }
    fz_buf stack_bufs[FZ_STACK_FRAMES];
    Py_buffer stack_views[FZ_STACK_FRAMES];
    fz_buf *bufs = stack_bufs;
    Py_buffer *views = stack_views;
    if (n > FZ_STACK_FRAMES) {
        bufs = PyMem_New(fz_buf, n);
        views = PyMem_New(Py_buffer, n);
        if (bufs == NULL || views == NULL) {
            PyMem_Free(bufs);
            PyMem_Free(views);
            Py_DECREF(seq);
            return PyErr_NoMemory();
        }
    }
    PyObject *result = NULL;
    Py_ssize_t acquired = 0; /* views[0..acquired) hold a buffer to release (obj NULL: a bytes frame) */
    for (; acquired < n; acquired++) { /* every frame's bytes first: never half a message */
        PyObject *it = PyTuple_GET_ITEM(seq, acquired);
        if (PyBytes_CheckExact(it)) {
            views[acquired].obj = NULL;
            bufs[acquired].data = PyBytes_AS_STRING(it);
            bufs[acquired].len = (size_t)PyBytes_GET_SIZE(it);
            continue;
        }
        if (!PyObject_CheckBuffer(it)) {
            PyErr_Format(PyExc_TypeError, "send_frames: frame %zd is %.100s, not bytes", acquired, Py_TYPE(it)->tp_name);
            goto done;
        }
        if (PyObject_GetBuffer(it, &views[acquired], PyBUF_SIMPLE) < 0) goto done; /* e.g. not contiguous */
        bufs[acquired].data = (const char *)views[acquired].buf;
        bufs[acquired].len = (size_t)views[acquired].len;
    }
    flags &= ~FZ_SNDMORE;
    for (Py_ssize_t i = 0; i < n; i++) {
        int e = call(op_send, h, &bufs[i], i < n - 1 ? (flags | FZ_SNDMORE) : flags, i == 0);
        if (e != 0) {
            if (e > 0) raise_errno(e);
            goto done;
        }
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    for (Py_ssize_t i = 0; i < acquired; i++) {
        if (views[i].obj != NULL) PyBuffer_Release(&views[i]);
    }
    if (bufs != stack_bufs) {
        PyMem_Free(bufs);
        PyMem_Free(views);
    }
    Py_DECREF(seq);
    return result;
}

/* A batch of whole multipart messages ready to leave without the GIL: `owned` holds a tuple per
 * message (so every frame stays referenced), `frames` points into those bytes objects. Built by
 * build_batch, with the GIL, from a sequence of sequences of exactly-bytes frames: bytes are
 * immutable, so nothing another thread does to the caller's lists can change or free a frame
 * while it is sent. */
typedef struct {
    const char *data;
    size_t len;
    int more;
} fz_frame;

typedef struct {
    PyObject *owned;
    fz_frame *frames;
    Py_ssize_t nframes;
    Py_ssize_t nmessages;
} fz_batch;

static void free_batch(fz_batch *b) { /* with the GIL */
    Py_XDECREF(b->owned);
    PyMem_Free(b->frames);
    PyMem_Free(b);
}

/* The batch of `messages`, checked whole (ValueError for a message with no frames, TypeError for a
 * frame that is not exactly bytes), or NULL with an exception set. */
static fz_batch *build_batch(PyObject *messages) {
    PyObject *outer = PySequence_Tuple(messages);
    if (outer == NULL) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(outer);
    fz_batch *b = PyMem_New(fz_batch, 1);
    if (b == NULL) {
        Py_DECREF(outer);
        PyErr_NoMemory();
        return NULL;
    }
    b->frames = NULL;
    b->nframes = 0;
    b->nmessages = n;
    b->owned = PyTuple_New(n);
    if (b->owned == NULL) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PySequence_Tuple(PyTuple_GET_ITEM(outer, i));
        if (m == NULL) goto fail;
        PyTuple_SET_ITEM(b->owned, i, m);
        Py_ssize_t k = PyTuple_GET_SIZE(m);
        if (k == 0) {
            PyErr_Format(PyExc_ValueError, "send_many: message %zd has no frames", i);
            goto fail;
        }
        for (Py_ssize_t j = 0; j < k; j++) {
            PyObject *f = PyTuple_GET_ITEM(m, j);
            if (!PyBytes_CheckExact(f)) {
                PyErr_Format(PyExc_TypeError, "send_many: frame %zd of message %zd is %.100s, not bytes", j, i,
                             Py_TYPE(f)->tp_name);
                goto fail;
            }
        }
        b->nframes += k;
    }
    if (b->nframes > 0) {
        b->frames = PyMem_New(fz_frame, b->nframes);
        if (b->frames == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    Py_ssize_t f = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyTuple_GET_ITEM(b->owned, i);
        Py_ssize_t k = PyTuple_GET_SIZE(m);
        for (Py_ssize_t j = 0; j < k; j++, f++) {
            PyObject *x = PyTuple_GET_ITEM(m, j);
            b->frames[f].data = PyBytes_AS_STRING(x);
            b->frames[f].len = (size_t)PyBytes_GET_SIZE(x);
            b->frames[f].more = j < k - 1;
        }
    }
    Py_DECREF(outer);
    return b;
fail:
    Py_DECREF(outer);
    free_batch(b);
    return NULL;
}

/* Send a batch's frames in order, without touching Python (call it with the GIL released):
 * 0, or the errno of the first send that failed (the rest of the batch is not sent). */
static int send_batch(void *h, const fz_batch *b) {
    for (Py_ssize_t i = 0; i < b->nframes; i++) {
        for (;;) {
            if (z_send(h, b->frames[i].data, b->frames[i].len, b->frames[i].more ? FZ_SNDMORE : 0) >= 0) break;
            int err = z_errno();
            if (err != EINTR) return err;
        }
    }
    return 0;
}

/* send_many(sock, messages) -> int: every message of `messages` (a sequence of whole multipart
 * messages, each a non-empty sequence of bytes), in order, with the GIL released for the whole
 * batch. Checked whole before the first frame goes (build_batch). EINTR is retried (signal handlers
 * run in the main thread, not here). A send that fails (the context terminated, say) ends the
 * batch: the error is raised, the messages after it are not sent. */
static PyObject *fz_send_many(PyObject *self, PyObject *args) {
    PyObject *sock, *messages;
    NEED_READY
    if (!PyArg_ParseTuple(args, "OO:send_many", &sock, &messages)) return NULL;
    void *h = handle_of(sock);
    if (h == NULL) return NULL;
    fz_batch *b = build_batch(messages);
    if (b == NULL) return NULL;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = send_batch(h, b);
    Py_END_ALLOW_THREADS
    Py_ssize_t n = b->nmessages;
    free_batch(b);
    if (err != 0) return raise_errno(err);
    return PyLong_FromSsize_t(n);
}

static PyObject *fz_readable(PyObject *self, PyObject *sock) {
    NEED_READY
    void *h = handle_of(sock);
    if (h == NULL) return NULL;
    int events = 0;
    size_t sz = sizeof(events);
    while (z_getsockopt(h, FZ_EVENTS, &events, &sz) < 0) { /* EINTR: handlers run, then ask again */
        int e = z_errno();
        if (e != EINTR) return raise_errno(e);
        if (PyErr_CheckSignals() < 0) return NULL;
        sz = sizeof(events);
    }
    return PyBool_FromLong(events & FZ_POLLIN);
}

/* ------------------------------------------------------------------ subscriber tracking */
/* track(batch, start, topics, seen, decode, decode_error, message_type, out) -> int
 *
 * The subscriber's common case in C: for batch[start:], each a received message (list of frames),
 * while a message has three frames, a topic already in `topics` (bytes -> str), a valid meta frame
 * (version byte `META_VERSION`, 8-byte publisher id, big-endian uint64 sequence) and the sequence
 * number that follows the last one in `seen` for its (publisher id, topic bytes) (or none yet),
 * decode its body with `decode` (None: keep the bytes), record the sequence number in `seen` and
 * append message_type(topic, seq, publisher_id, data) to the list `out`. Returns the index of the
 * first message that needs the general path (a new topic, a gap, out of order, malformed, a body
 * `decode` refuses with `decode_error`), or len(batch). */
#define FZ_META_SIZE 17
#define FZ_META_VERSION 1

static PyObject *fz_track(PyObject *self, PyObject *args) {
    PyObject *batch, *topics, *seen, *decode, *decode_error, *message_type, *out;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "O!nO!O!OOOO!:track", &PyList_Type, &batch, &start, &PyDict_Type, &topics,
                          &PyDict_Type, &seen, &decode, &decode_error, &message_type, &PyList_Type, &out))
        return NULL;
    Py_ssize_t i = start < 0 ? 0 : start;
    /* `decode` and `message_type` may run Python code (a hook, a finalizer the collector runs), which
     * may change `batch` or `topics`: the message's frames and its topic are held, not borrowed,
     * while they are used, and the batch's length is read again each turn. */
    for (; i < PyList_GET_SIZE(batch); i++) {
        PyObject *frames = PyList_GET_ITEM(batch, i);
        if (!PyList_Check(frames) || PyList_GET_SIZE(frames) != 3) break;
        PyObject *tb = PyList_GET_ITEM(frames, 0), *meta = PyList_GET_ITEM(frames, 1), *body = PyList_GET_ITEM(frames, 2);
        if (!PyBytes_Check(tb) || !PyBytes_Check(meta) || PyBytes_GET_SIZE(meta) != FZ_META_SIZE) break;
        const unsigned char *m = (const unsigned char *)PyBytes_AS_STRING(meta);
        if (m[0] != FZ_META_VERSION) break;
        PyObject *topic = PyDict_GetItemWithError(topics, tb); /* borrowed: held below */
        if (topic == NULL) {
            if (PyErr_Occurred()) return NULL;
            break;
        }
        unsigned long long seq = 0;
        for (int k = 9; k < 17; k++) seq = (seq << 8) | m[k];
        PyObject *pid = PyBytes_FromStringAndSize((const char *)m + 1, 8);
        if (pid == NULL) return NULL;
        PyObject *key = PyTuple_Pack(2, pid, tb);
        if (key == NULL) { Py_DECREF(pid); return NULL; }
        PyObject *last = PyDict_GetItemWithError(seen, key); /* borrowed */
        if (last == NULL && PyErr_Occurred()) { Py_DECREF(key); Py_DECREF(pid); return NULL; }
        if (last != NULL) {
            unsigned long long lv = PyLong_AsUnsignedLongLong(last);
            if (lv == (unsigned long long)-1 && PyErr_Occurred()) { Py_DECREF(key); Py_DECREF(pid); return NULL; }
            if (lv + 1 != seq) { Py_DECREF(key); Py_DECREF(pid); break; } /* a gap or out of order */
        }
        Py_INCREF(frames); /* holds tb, meta and body */
        Py_INCREF(topic);
        PyObject *data;
        int stop = 0; /* 1: leave for the general path; -1: an exception is set */
        if (decode == Py_None) {
            data = body;
            Py_INCREF(data);
        } else {
            data = PyObject_CallOneArg(decode, body);
            if (data == NULL) {
                if (PyErr_ExceptionMatches(decode_error)) { PyErr_Clear(); stop = 1; } /* counted by the general path */
                else stop = -1;
            }
        }
        PyObject *msg = NULL;
        if (data != NULL) {
            PyObject *seqobj = PyLong_FromUnsignedLongLong(seq);
            if (seqobj != NULL && PyDict_SetItem(seen, key, seqobj) == 0) {
                PyObject *argv[4] = {topic, seqobj, pid, data};
                msg = PyObject_Vectorcall(message_type, argv, 4, NULL);
            }
            Py_XDECREF(seqobj);
            Py_DECREF(data);
            if (msg == NULL) stop = -1;
        }
        Py_DECREF(key);
        Py_DECREF(pid);
        Py_DECREF(topic);
        Py_DECREF(frames);
        if (stop > 0) break;
        if (stop < 0) return NULL;
        int rc = PyList_Append(out, msg);
        Py_DECREF(msg);
        if (rc < 0) return NULL;
    }
    return PyLong_FromSsize_t(i);
}

/* ------------------------------------------------------------------ router monitor sampling */
/* sample(sock, limit, valid, is_valid) -> (n, newest, others, bad_topics)
 *
 * The pub/sub monitor's drain in one call: receive up to `limit` waiting messages without blocking
 * (n: how many) and fold the well-formed ones (three frames, a 17-byte meta frame of version
 * META_VERSION, a topic in the set `valid` or one `is_valid(topic)` accepts, which is then added to
 * `valid`) into `newest`, a dict (topic bytes, publisher id bytes) -> highest sequence number seen in
 * this batch: the statistics only need the newest. Bodies are never copied. `bad_topics` counts
 * messages whose topic `is_valid` refused. Every other message (a subscription event from the
 * capture, a malformed one) is returned in the list `others` (frames after the second as b""), for
 * the monitor to account. */
static PyObject *fz_sample(PyObject *self, PyObject *args) {
    PyObject *sock, *valid, *is_valid;
    Py_ssize_t limit, n = 0, bad_topics = 0;
    NEED_READY
    if (!PyArg_ParseTuple(args, "OnO!O:sample", &sock, &limit, &PySet_Type, &valid, &is_valid)) return NULL;
    void *h = handle_of(sock);
    if (h == NULL) return NULL;
    PyObject *newest = PyDict_New(), *others = PyList_New(0);
    if (newest == NULL || others == NULL) goto fail_nomsg;
    fz_msg_t msg;
    z_msg_init(&msg);
    for (; n < limit; n++) {
        if (z_msg_recv(&msg, h, FZ_DONTWAIT) < 0) {
            int err = z_errno();
            if (err == EAGAIN || err == EINTR) break; /* drained (or interrupted: the monitor polls again) */
            z_msg_close(&msg);
            Py_DECREF(newest);
            Py_DECREF(others);
            return raise_errno(err);
        }
        /* Only topic and meta are copied; later frames come as b"" (as recv_messages' keep=2): the
         * monitor never reads a body, and junk frames from a hostile publisher cost no copy. */
        PyObject *frames = PyList_New(0);
        if (frames == NULL) { discard_rest(h, &msg); goto fail; }
        int more = 1, count = 0;
        while (more) {
            PyObject *b;
            if (count >= 2) {
                b = empty_bytes;
                Py_INCREF(b);
            } else {
                b = PyBytes_FromStringAndSize((const char *)z_msg_data(&msg), (Py_ssize_t)z_msg_size(&msg));
            }
            if (b == NULL || PyList_Append(frames, b) < 0) {
                Py_XDECREF(b);
                Py_DECREF(frames);
                discard_rest(h, &msg); /* the next receive starts at the next message */
                goto fail;
            }
            Py_DECREF(b);
            count++;
            more = z_msg_more(&msg);
            int err = more ? recv_more(h, &msg) : 0;
            if (err != 0) {
                Py_DECREF(frames);
                z_msg_close(&msg);
                Py_DECREF(newest);
                Py_DECREF(others);
                return raise_errno(err);
            }
        }
        PyObject *meta = count == 3 ? PyList_GET_ITEM(frames, 1) : NULL;
        if (meta != NULL && PyBytes_GET_SIZE(meta) == FZ_META_SIZE && ((unsigned char *)PyBytes_AS_STRING(meta))[0] == FZ_META_VERSION) {
            PyObject *topic = PyList_GET_ITEM(frames, 0);
            int known = PySet_Contains(valid, topic);
            if (known == 0) { /* a topic not seen yet: validated once */
                PyObject *ok = PyObject_CallOneArg(is_valid, topic);
                known = ok == NULL ? -1 : PyObject_IsTrue(ok);
                Py_XDECREF(ok);
                if (known == 1 && PySet_Add(valid, topic) < 0) known = -1;
                if (known == 0) {
                    bad_topics++;
                    Py_DECREF(frames);
                    continue;
                }
            }
            if (known < 0) { Py_DECREF(frames); goto fail; }
            const unsigned char *m = (const unsigned char *)PyBytes_AS_STRING(meta);
            unsigned long long seq = 0;
            for (int k = 9; k < 17; k++) seq = (seq << 8) | m[k];
            PyObject *pid = PyBytes_FromStringAndSize((const char *)m + 1, 8);
            PyObject *key = pid != NULL ? PyTuple_Pack(2, PyList_GET_ITEM(frames, 0), pid) : NULL;
            Py_XDECREF(pid);
            if (key == NULL) { Py_DECREF(frames); goto fail; }
            PyObject *old = PyDict_GetItemWithError(newest, key);
            int rc = 0;
            if (old == NULL && PyErr_Occurred()) rc = -1;
            else if (old == NULL || PyLong_AsUnsignedLongLong(old) < seq) {
                PyObject *v = PyLong_FromUnsignedLongLong(seq);
                rc = v == NULL ? -1 : PyDict_SetItem(newest, key, v);
                Py_XDECREF(v);
            }
            Py_DECREF(key);
            Py_DECREF(frames);
            if (rc < 0 || PyErr_Occurred()) goto fail;
        } else {
            int rc = PyList_Append(others, frames);
            Py_DECREF(frames);
            if (rc < 0) goto fail;
        }
    }
    z_msg_close(&msg);
    return Py_BuildValue("(nNNn)", n, newest, others, bad_topics);
fail:
    z_msg_close(&msg);
fail_nomsg:
    Py_XDECREF(newest);
    Py_XDECREF(others);
    return NULL;
}

/* ------------------------------------------------------------------ init */
static int find_libzmq(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    const char *name = info->dlpi_name;
    if (name != NULL && strstr(name, "libzmq") != NULL) {
        strncpy((char *)data, name, 4095);
        return 1;
    }
    return 0;
}

static PyObject *fz_init(PyObject *self, PyObject *args) {
    char path[4096] = {0};
    const char *module = NULL;
    void *lib = NULL;
    if (!PyArg_ParseTuple(args, "|z:init", &module)) return NULL;
    if (ready) goto done;
    /* pyzmq's own backend module, when given: dlsym through its handle resolves in the module and
     * then in the libraries it was linked with, i.e. exactly the libzmq pyzmq uses, even where a
     * second libzmq is loaded in the process. */
    if (module != NULL && (lib = dlopen(module, RTLD_NOW | RTLD_NOLOAD)) != NULL && dlsym(lib, "zmq_msg_recv") != NULL) {
        strncpy(path, module, sizeof(path) - 1);
    } else {
        if (!dl_iterate_phdr(find_libzmq, path) || path[0] == 0) {
            PyErr_SetString(PyExc_ImportError, "no libzmq loaded in this process (import zmq first)");
            return NULL;
        }
        lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (lib == NULL) {
            PyErr_Format(PyExc_ImportError, "cannot open the loaded libzmq %s: %s", path, dlerror());
            return NULL;
        }
    }
#define SYM(var, name)                                                                     \
    *(void **)(&var) = dlsym(lib, name);                                                   \
    if (var == NULL) {                                                                     \
        PyErr_Format(PyExc_ImportError, "libzmq %s lacks %s", path, name);                 \
        return NULL;                                                                       \
    }
    SYM(z_msg_init, "zmq_msg_init")
    SYM(z_msg_recv, "zmq_msg_recv")
    SYM(z_msg_close, "zmq_msg_close")
    SYM(z_msg_data, "zmq_msg_data")
    SYM(z_msg_size, "zmq_msg_size")
    SYM(z_msg_more, "zmq_msg_more")
    SYM(z_send, "zmq_send")
    SYM(z_getsockopt, "zmq_getsockopt")
    SYM(z_errno, "zmq_errno")
    SYM(z_version, "zmq_version")
#undef SYM
    {
        int major = 0, minor = 0, patch = 0;
        z_version(&major, &minor, &patch);
        if (major != 4) {
            PyErr_Format(PyExc_ImportError, "libzmq %d.%d.%d: this module is built for libzmq 4", major, minor, patch);
            return NULL;
        }
    }
    PyObject *err_mod = PyImport_ImportModule("zmq.error");
    if (err_mod == NULL) return NULL;
    check_rc = PyObject_GetAttrString(err_mod, "_check_rc");
    Py_DECREF(err_mod);
    if (check_rc == NULL) return NULL;
    {
        /* `_fastzmq.library`: where the functions were found (pyzmq's backend module or a libzmq) */
        PyObject *where = PyUnicode_DecodeFSDefault(path);
        if (where == NULL || PyObject_SetAttrString(self, "library", where) < 0) {
            Py_XDECREF(where);
            return NULL;
        }
        Py_DECREF(where);
    }
    ready = 1;
done: {
        int major = 0, minor = 0, patch = 0;
        z_version(&major, &minor, &patch);
        return Py_BuildValue("(iii)", major, minor, patch);
    }
}

static PyMethodDef methods[] = {
    {"init", fz_init, METH_VARARGS,
     "init(module=None): find the libzmq pyzmq loaded (through pyzmq's backend module at path `module` when "
     "given, else the first libzmq loaded in the process); returns its version (major, minor, patch)."},
    {"recv_frames", fz_recv_frames, METH_VARARGS, "recv_frames(sock, flags=0) -> list[bytes]: one whole multipart message."},
    {"recv_messages", fz_recv_messages, METH_VARARGS,
     "recv_messages(sock, limit, keep=-1, max_bytes=-1) -> list[list[bytes]]: up to limit waiting messages, "
     "without blocking; with keep >= 0 the frames after the first keep are b\"\" (not copied); with max_bytes >= 0 "
     "no further message is received once the batch holds that many bytes."},
    {"send_frames", fz_send_frames, METH_VARARGS, "send_frames(sock, frames, flags=0): one multipart message."},
    {"send_many", fz_send_many, METH_VARARGS,
     "send_many(sock, messages) -> int: whole multipart messages of bytes frames, in order, with the GIL released "
     "for the batch; checked whole before the first frame goes; returns the number sent."},
    {"readable", fz_readable, METH_O, "readable(sock) -> bool: a whole message is waiting."},
    {"track", fz_track, METH_VARARGS,
     "track(batch, start, topics, seen, decode, decode_error, message_type, out) -> int: the subscriber's "
     "common case (known topic, next sequence number) in C; returns the index of the first message that needs "
     "the general path."},
    {"sample", fz_sample, METH_VARARGS,
     "sample(sock, limit, valid, is_valid) -> (n, newest, others, bad_topics): the pub/sub monitor's drain; newest "
     "maps (topic, publisher id) to the highest sequence number in the batch, others holds every message that is "
     "not a well-formed publish."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastzmq",
                                    "Multipart receives and sends on pyzmq sockets in one C call.", -1, methods};

PyMODINIT_FUNC PyInit__fastzmq(void) {
    str_underlying = PyUnicode_InternFromString("underlying");
    if (str_underlying == NULL) return NULL;
    empty_bytes = PyBytes_FromStringAndSize(NULL, 0);
    if (empty_bytes == NULL) return NULL;
    return PyModule_Create(&module);
}
