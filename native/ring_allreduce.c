// The ring allreduce of src/cluster/ring-collectives.ts, run on a libuv pool thread over the stream
// data plane's two sockets, for large collectives (src/cluster/native-ring.ts decides when).
//
// Why native: with as many ranks as cores the allreduce is CPU-bound, and in JavaScript every read and
// every write goes through Node's stream machinery (a callback per read, a Writable with its buffers
// and ticks per write) while the header work and the handler run per message: about 5-8 ms per 25M
// allreduce and rank at 4 ranks on 2 cores, as much as gloo's whole user time. Here the same protocol
// (same 40-byte headers, same sub-chunks, same order of additions, so the same bits) runs as a plain
// poll/read/sendmsg loop with the adds in C: the CPU left is the kernel's socket copies.
//
// What stays in JavaScript: connecting and authenticating the sockets, deciding which collectives come
// here, turning a rejected header into the same error the JavaScript path reports (the header's raw
// bytes come back), lost ranks, timeouts (a progress counter this loop bumps per message) and aborts
// (a flag this loop checks between polls).

#include <node_api.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

// Node ignores SIGPIPE, so where the flag does not exist (macOS) nothing is lost without it.
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

#define HEADER_BYTES 40
#define WIRE_MAGIC 0x43444753u
#define OP_SUM 32
#define OP_MEAN 33
#define DTYPE_F32 1
#define POLL_SLICE_MS 50

// The wire header (src/cluster/wire-header.ts), little endian; x86-64 and aarch64 lay it out as on the wire.
typedef struct {
  uint32_t magic;
  uint8_t version, op, dtype, flags;
  uint32_t sender, seq, name_hash, step, chunk, byte_length;
  double total_bytes;
} header_t;
_Static_assert(sizeof(header_t) == HEADER_BYTES, "wire header is 40 bytes");

enum { OK = 0, ABORTED = 1, BAD_HEADER = 2, LOST_PREV = 3, LOST_NEXT = 4, FAILED = 5 };

typedef struct {
  header_t h;
  uint8_t* payload;
  size_t len;
} message_t;

typedef struct {
  napi_async_work work;
  napi_ref refs[5];  // data, scratch, control cells, pre-read bytes, callback
  // inputs
  int in_fd, out_fd;
  float* data;
  uint8_t* scratch;
  int32_t* control;  // [0]: abort flag (set by JavaScript), [1]: messages received (read by its watchdog)
  uint8_t pre[HEADER_BYTES];
  size_t pre_len;
  int rank, n, mean;
  uint32_t seq, name_hash;
  size_t length, sub_elems;
  // result
  int code, err;
  header_t bad;
  int expect_step;  // with BAD_HEADER: the step expected next of that sub-chunk
} job_t;

// Element range [lo, hi) of chunk c of `length` elements split into n near-equal chunks (chunkRange).
static void chunk_range(size_t length, int n, int c, size_t* lo, size_t* hi) {
  size_t base = length / n, rem = length % n, cc = (size_t)c;
  *lo = cc * base + (cc < rem ? cc : rem);
  *hi = *lo + base + (cc < rem ? 1 : 0);
}

static void sub_range(const job_t* j, int c, size_t s, size_t* a, size_t* b) {
  size_t lo, hi;
  chunk_range(j->length, j->n, c, &lo, &hi);
  *a = lo + s * j->sub_elems;
  if (*a > hi) *a = hi;
  *b = *a + j->sub_elems;
  if (*b > hi) *b = hi;
}

static int mod(int x, int n) { return ((x % n) + n) % n; }

// Chunk this rank receives at `step`: reduce-scatter r-1-s, all-gather r-(s-(n-1)).
static int chunk_at(const job_t* j, int step) {
  return step < j->n - 1 ? mod(j->rank - 1 - step, j->n) : mod(j->rank - (step - (j->n - 1)), j->n);
}

static void add_into(float* restrict dst, const float* restrict src, size_t count) {
  for (size_t i = 0; i < count; i++) dst[i] += src[i];
}

static void divide(float* p, size_t count, float d) {
  for (size_t i = 0; i < count; i++) p[i] = p[i] / d;
}

// Message `sub` of step `step` (chunk `chunk`): a header and a view of the elements it carries.
static void enqueue(const job_t* j, message_t* m, int step, size_t sub, int chunk) {
  size_t a, b;
  sub_range(j, chunk, sub, &a, &b);
  memset(&m->h, 0, sizeof m->h);
  m->h.magic = WIRE_MAGIC;
  m->h.version = 1;
  m->h.op = j->mean ? OP_MEAN : OP_SUM;
  m->h.dtype = DTYPE_F32;
  m->h.sender = (uint32_t)j->rank;
  m->h.seq = j->seq;
  m->h.name_hash = j->name_hash;
  m->h.step = (uint32_t)step;
  m->h.chunk = (uint32_t)sub;
  m->h.byte_length = (uint32_t)((b - a) * 4);
  m->h.total_bytes = (double)j->length * 4.0;
  m->payload = (uint8_t*)(j->data + a);
  m->len = (b - a) * 4;
}

static void run(job_t* j) {
  const int n = j->n, steps = 2 * (n - 1);
  const size_t chunk_len = (j->length + n - 1) / n;
  const size_t nsub = chunk_len ? (chunk_len + j->sub_elems - 1) / j->sub_elems : 1;
  const size_t expected = (size_t)steps * nsub;
  const int prev = mod(j->rank - 1, n);
  int* next_step = calloc(nsub, sizeof(int));
  message_t* queue = malloc(sizeof(message_t) * (expected + 1));
  if (next_step == NULL || queue == NULL) {
    j->code = FAILED;
    j->err = ENOMEM;
    goto done;
  }
  size_t q_head = 0, q_tail = 0, q_sent = 0, received = 0;

  // Our own step-0 sends go first, as in ring-collectives.ts.
  for (size_t s = 0; s < nsub; s++) enqueue(j, &queue[q_tail++], 0, s, j->rank);

  header_t rh;
  memcpy(&rh, j->pre, j->pre_len);
  size_t got = j->pre_len, want = HEADER_BYTES, dest_lo = 0;
  int in_header = 1;
  uint8_t* dest = NULL;

  while (received < expected || q_head < q_tail) {
    if (__atomic_load_n(&j->control[0], __ATOMIC_ACQUIRE) != 0) {
      j->code = ABORTED;
      goto done;
    }
    // A socket with nothing to do here is left out: a hung-up one would otherwise wake every poll.
    struct pollfd fds[2] = {
        {received < expected ? j->in_fd : -1, POLLIN, 0},
        {q_head < q_tail ? j->out_fd : -1, POLLOUT, 0},
    };
    int ready = poll(fds, 2, POLL_SLICE_MS);
    if (ready < 0) {
      if (errno == EINTR) continue;
      j->code = FAILED;
      j->err = errno;
      goto done;
    }
    if (ready == 0) continue;
    if (fds[1].revents) {
      while (q_head < q_tail) {
        message_t* m = &queue[q_head];
        struct iovec iov[2];
        int k = 0;
        if (q_sent < HEADER_BYTES) {
          iov[k].iov_base = (uint8_t*)&m->h + q_sent;
          iov[k++].iov_len = HEADER_BYTES - q_sent;
          if (m->len > 0) {
            iov[k].iov_base = m->payload;
            iov[k++].iov_len = m->len;
          }
        } else {
          iov[k].iov_base = m->payload + (q_sent - HEADER_BYTES);
          iov[k++].iov_len = m->len - (q_sent - HEADER_BYTES);
        }
        struct msghdr mh = {0};
        mh.msg_iov = iov;
        mh.msg_iovlen = k;
        ssize_t w = sendmsg(j->out_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
          j->code = (errno == EPIPE || errno == ECONNRESET) ? LOST_NEXT : FAILED;
          j->err = errno;
          goto done;
        }
        q_sent += (size_t)w;
        if (q_sent < HEADER_BYTES + m->len) break;
        q_head++;
        q_sent = 0;
      }
    }
    if (fds[0].revents) {
      while (received < expected) {
        uint8_t* target = in_header ? (uint8_t*)&rh + got : dest + got;
        ssize_t r = want > got ? recv(j->in_fd, target, want - got, MSG_DONTWAIT) : 0;
        if (want > got) {
          if (r == 0) {
            j->code = LOST_PREV;
            goto done;
          }
          if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
            j->code = errno == ECONNRESET ? LOST_PREV : FAILED;
            j->err = errno;
            goto done;
          }
          got += (size_t)r;
          if (got < want) continue;
        }
        if (in_header) {
          // Everything ring-collectives.ts checks; what fails goes back to JavaScript to be named.
          size_t sub = rh.chunk;
          int ok = rh.magic == WIRE_MAGIC && rh.version == 1 && rh.op == (j->mean ? OP_MEAN : OP_SUM) &&
                   rh.dtype == DTYPE_F32 && rh.flags == 0 && rh.sender == (uint32_t)prev && rh.seq == j->seq &&
                   rh.name_hash == j->name_hash && rh.total_bytes == (double)j->length * 4.0 && sub < nsub &&
                   next_step[sub] < steps && rh.step == (uint32_t)next_step[sub];
          size_t a = 0, b = 0;
          if (ok) {
            sub_range(j, chunk_at(j, (int)rh.step), sub, &a, &b);
            ok = rh.byte_length == (b - a) * 4;
          }
          if (!ok) {
            j->code = BAD_HEADER;
            j->bad = rh;
            j->expect_step = sub < nsub ? next_step[sub] : 0;
            goto done;
          }
          dest_lo = a;
          dest = (int)rh.step < n - 1 ? j->scratch : (uint8_t*)(j->data + a);
          in_header = 0;
          got = 0;
          want = rh.byte_length;
          if (want > 0) continue;
        }
        // A whole message: add a partial sum, pass it on.
        int step = (int)rh.step;
        size_t sub = rh.chunk;
        next_step[sub] = step + 1;
        received++;
        __atomic_add_fetch(&j->control[1], 1, __ATOMIC_RELEASE);
        if (step < n - 1) {
          add_into(j->data + dest_lo, (const float*)j->scratch, rh.byte_length / 4);
          if (step == n - 2 && j->mean) divide(j->data + dest_lo, rh.byte_length / 4, (float)n);
        }
        if (step < steps - 1) enqueue(j, &queue[q_tail++], step + 1, sub, chunk_at(j, step));
        in_header = 1;
        got = 0;
        want = HEADER_BYTES;
      }
    }
  }
  j->code = OK;
done:
  free(next_step);
  free(queue);
}

static void execute(napi_env env, void* data) {
  (void)env;
  run((job_t*)data);
}

static void set_int(napi_env env, napi_value obj, const char* key, int64_t v) {
  napi_value x;
  napi_create_int64(env, v, &x);
  napi_set_named_property(env, obj, key, x);
}

static void complete(napi_env env, napi_status status, void* data) {
  job_t* j = data;
  napi_value result, cb, global;
  napi_create_object(env, &result);
  set_int(env, result, "code", status == napi_ok ? j->code : FAILED);
  set_int(env, result, "errno", j->err);
  if (j->code == BAD_HEADER) {
    void* bytes;
    napi_value buf;
    napi_create_buffer_copy(env, HEADER_BYTES, &j->bad, &bytes, &buf);
    napi_set_named_property(env, result, "header", buf);
    set_int(env, result, "expectStep", j->expect_step);
  }
  napi_get_reference_value(env, j->refs[4], &cb);
  for (int i = 0; i < 5; i++) napi_delete_reference(env, j->refs[i]);
  napi_delete_async_work(env, j->work);
  free(j);
  napi_get_global(env, &global);
  napi_call_function(env, global, cb, 1, &result, NULL);
}

static int typed(napi_env env, napi_value v, void** ptr, size_t* bytes) {
  napi_typedarray_type type;
  size_t length, offset;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &length, ptr, &ab, &offset) != napi_ok) return 0;
  size_t width = type == napi_int32_array || type == napi_float32_array ? 4 : type == napi_float64_array ? 8 : 1;
  *bytes = length * width;
  return 1;
}

// start(inFd, outFd, data: Uint8Array, scratch: Uint8Array, control: Int32Array(2), pre: Uint8Array,
//       params: Float64Array [rank, n, seq, nameHash, mean, subChunkBytes], done: (result) => void)
static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 8) {
    napi_throw_type_error(env, NULL, "start: 8 arguments expected");
    return NULL;
  }
  job_t* j = calloc(1, sizeof(job_t));
  int32_t in_fd, out_fd;
  void *data, *scratch, *control, *pre, *params;
  size_t data_bytes, scratch_bytes, control_bytes, pre_bytes, params_bytes;
  if (j == NULL || napi_get_value_int32(env, argv[0], &in_fd) != napi_ok || napi_get_value_int32(env, argv[1], &out_fd) != napi_ok ||
      !typed(env, argv[2], &data, &data_bytes) || !typed(env, argv[3], &scratch, &scratch_bytes) ||
      !typed(env, argv[4], &control, &control_bytes) || control_bytes < 8 || !typed(env, argv[5], &pre, &pre_bytes) ||
      pre_bytes > HEADER_BYTES || !typed(env, argv[6], &params, &params_bytes) || params_bytes < 6 * 8) {
    free(j);
    napi_throw_type_error(env, NULL, "start: bad arguments");
    return NULL;
  }
  const double* p = params;
  j->in_fd = in_fd;
  j->out_fd = out_fd;
  j->data = data;
  j->length = data_bytes / 4;
  j->scratch = scratch;
  j->control = control;
  memcpy(j->pre, pre, pre_bytes);
  j->pre_len = pre_bytes;
  j->rank = (int)p[0];
  j->n = (int)p[1];
  j->seq = (uint32_t)p[2];
  j->name_hash = (uint32_t)p[3];
  j->mean = p[4] != 0;
  j->sub_elems = (size_t)p[5] / 4;
  if (j->n < 2 || j->rank < 0 || j->rank >= j->n || j->sub_elems == 0 || scratch_bytes < j->sub_elems * 4) {
    free(j);
    napi_throw_range_error(env, NULL, "start: bad ring parameters");
    return NULL;
  }
  // The arrays stay alive while the pool thread uses them; the callback until it is called.
  const int kept[5] = {2, 3, 4, 5, 7};  // data, scratch, control, pre, done
  for (int i = 0; i < 5; i++) napi_create_reference(env, argv[kept[i]], 1, &j->refs[i]);
  napi_value name;
  napi_create_string_utf8(env, "segdist.allreduce", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "start", NAPI_AUTO_LENGTH, start, NULL, &fn);
  napi_set_named_property(env, exports, "start", fn);
  return exports;
}
