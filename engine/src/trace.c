/* corral engine: the trace sink (see corral/trace.h). */
#define _GNU_SOURCE
#include "corral/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUF_CAP 65536   /* a process's buffer: flushed when an event would not fit */
#define EVENT_SLACK 192 /* the most an event's fixed fields take */

static int trace_fd = -1;
static char *trace_path;
static int opener_pid;         /* the process that created the file, else 0 */
static int own_pid;            /* getpid(), which is a system call, cached */
static char own_ids[48];       /* ,"pid":P,"tid":P,"ts": of own_pid */
static size_t own_ids_len;
static int64_t opened_ns;      /* when it did: its lifetime slice starts there */
static int64_t first_ns;       /* time of the oldest buffered event */
static size_t buf_len;
static char buf[BUF_CAP];

int cr_trace_on(void) { return trace_fd >= 0; }
const char *cr_trace_path(void) { return trace_fd >= 0 ? trace_path : NULL; }

int64_t cr_trace_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Writes n bytes at p whole, retrying short writes and EINTR; -errno. */
static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Writes the buffer (not the open run of short tasks: cr_trace_flush). */
static void write_buf(void) {
  if (trace_fd < 0 || buf_len == 0) return;
  (void)write_all(trace_fd, buf, buf_len);
  buf_len = 0;
}

/* The open run: brief tasks of one batch, back to back, not written yet
 * (cr_trace_task). */
static struct {
  int64_t t0, t1, batch, task, tasks, items;
} run;

static void end_run(void);

void cr_trace_flush(void) {
  if (trace_fd < 0) return;
  end_run();
  write_buf();
}

static void set_own_pid(void) {
  own_pid = getpid();
  int n = snprintf(own_ids, sizeof own_ids, ",\"pid\":%d,\"tid\":%d,\"ts\":", own_pid, own_pid);
  own_ids_len = n > 0 ? (size_t)n : 0;
}

void cr__trace_after_fork(void) {
  buf_len = 0;
  run.tasks = 0;
  set_own_pid();
  opener_pid = 0; /* the child's lifetime is its parent's to write */
}

static void at_exit(void) { cr__trace_at_exit(); }

int cr_trace_open(const char *path, int create) {
  static int atexit_registered;
  cr_trace_close();
  int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0);
  int fd = open(path, flags, 0644);
  if (fd < 0) return -errno;
  int rc = create ? write_all(fd, "[\n", 2) : 0;
  /* Absolute, so that a child started elsewhere finds the same file. */
  char *copy = NULL;
  char cwd[4096];
  if (path[0] != '/' && getcwd(cwd, sizeof cwd)) {
    size_t n = strlen(cwd) + strlen(path) + 2;
    copy = malloc(n);
    if (copy) snprintf(copy, n, "%s/%s", cwd, path);
  } else {
    copy = strdup(path);
  }
  if (rc == 0 && !copy) rc = -ENOMEM;
  if (rc < 0) {
    free(copy);
    close(fd);
    return rc;
  }
  /* A process that never opened the engine (a script that starts no
   * process) has no cr_engine_finish to end its trace. */
  if (!atexit_registered && atexit(at_exit) == 0) atexit_registered = 1;
  trace_fd = fd;
  trace_path = copy;
  set_own_pid();
  opener_pid = create ? own_pid : 0;
  opened_ns = cr_trace_now();
  buf_len = 0;
  return 0;
}

static void opener_lifetime(void) {
  if (opener_pid != own_pid) return;
  cr_trace_slice(0, "process", "process", opened_ns, cr_trace_now(), NULL);
  opener_pid = 0;
}

void cr_trace_close(void) {
  if (trace_fd < 0) return;
  opener_lifetime();
  cr_trace_flush();
  close(trace_fd);
  trace_fd = -1;
  free(trace_path);
  trace_path = NULL;
}

void cr__trace_at_exit(void) {
  if (trace_fd < 0) return;
  opener_lifetime();
  cr_trace_flush();
}

/* ---- building an event in the buffer ------------------------------------------ */

int cr_trace_json_string(char *out, size_t cap, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  if (cap < 3) return -1;
  out[n++] = '"';
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (n + 7 >= cap) return -1;
    if (c == '"' || c == '\\') {
      out[n++] = '\\';
      out[n++] = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      memcpy(out + n, "\\u00", 4);
      out[n + 4] = hex[c >> 4];
      out[n + 5] = hex[c & 15];
      n += 6;
    } else {
      out[n++] = (char)c; /* UTF-8 passes as is */
    }
  }
  out[n++] = '"';
  out[n] = 0;
  return (int)n;
}

/* The event under construction: in buf after buf_len, or in a block of its
 * own when it is bigger than the buffer. */
typedef struct {
  char *p;
  size_t n, cap;
  char *heap;
} ev_t;

/* Makes room for an event of at most `need` bytes. */
static int ev_begin(ev_t *e, size_t need, int64_t ts) {
  e->heap = NULL;
  e->n = 0;
  if (buf_len + need > BUF_CAP) write_buf();
  if (need > BUF_CAP) {
    e->heap = malloc(need);
    if (!e->heap) return -1;
    e->p = e->heap;
    e->cap = need;
    return 0;
  }
  if (buf_len == 0) first_ns = ts;
  e->p = buf + buf_len;
  e->cap = BUF_CAP - buf_len;
  return 0;
}

static void ev_put(ev_t *e, const char *s, size_t n) {
  memcpy(e->p + e->n, s, n);
  e->n += n;
}
#define EV_LIT(e, s) ev_put((e), (s), sizeof(s) - 1)

static void ev_str(ev_t *e, const char *s) {
  int n = cr_trace_json_string(e->p + e->n, e->cap - e->n, s, strlen(s));
  if (n > 0) e->n += (size_t)n;
}

/* Two digits at a time: a timestamp has a dozen. */
static const char digit_pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                  "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                  "8081828384858687888990919293949596979899";

static void ev_uint(ev_t *e, uint64_t v) {
  char tmp[24];
  int n = sizeof tmp;
  while (v >= 100) {
    unsigned d = (unsigned)(v % 100) * 2;
    v /= 100;
    tmp[--n] = digit_pairs[d + 1];
    tmp[--n] = digit_pairs[d];
  }
  if (v >= 10) {
    unsigned d = (unsigned)v * 2;
    tmp[--n] = digit_pairs[d + 1];
    tmp[--n] = digit_pairs[d];
  } else {
    tmp[--n] = (char)('0' + v);
  }
  ev_put(e, tmp + n, sizeof tmp - (size_t)n);
}

static void ev_int(ev_t *e, int64_t v) {
  if (v < 0) {
    e->p[e->n++] = '-';
    ev_uint(e, (uint64_t)(-(v + 1)) + 1);
  } else {
    ev_uint(e, (uint64_t)v);
  }
}

/* Nanoseconds as microseconds with three decimals. */
static void ev_us(ev_t *e, int64_t ns) {
  if (ns < 0) {
    e->p[e->n++] = '-';
    ns = -ns;
  }
  ev_uint(e, (uint64_t)(ns / 1000));
  unsigned frac = (unsigned)(ns % 1000);
  e->p[e->n++] = '.';
  e->p[e->n++] = (char)('0' + frac / 100);
  e->p[e->n++] = digit_pairs[frac % 100 * 2];
  e->p[e->n++] = digit_pairs[frac % 100 * 2 + 1];
}

/* {"ph":"X","pid":P,"tid":P,"ts":T */
static void ev_head(ev_t *e, char ph, int pid, int64_t ts) {
  EV_LIT(e, "{\"ph\":\"");
  e->p[e->n++] = ph;
  e->p[e->n++] = '"';
  if (pid == 0 || pid == own_pid) {
    ev_put(e, own_ids, own_ids_len);
  } else {
    EV_LIT(e, ",\"pid\":");
    ev_int(e, pid);
    EV_LIT(e, ",\"tid\":");
    ev_int(e, pid);
    EV_LIT(e, ",\"ts\":");
  }
  ev_us(e, ts);
}

/* Ends the event: args, the closing brace and ",\n"; then it counts as
 * buffered (or, bigger than the buffer, is written on its own). */
static void ev_end(ev_t *e, const char *args, int64_t ts) {
  if (args) {
    EV_LIT(e, ",\"args\":");
    ev_put(e, args, strlen(args));
  }
  EV_LIT(e, "},\n");
  if (e->heap) {
    (void)write_all(trace_fd, e->heap, e->n);
    free(e->heap);
    return;
  }
  buf_len += e->n;
  if (ts - first_ns >= CR_TRACE_FLUSH_NS) write_buf();
}

/* Bytes an event with these strings can take. */
static size_t ev_need(const char *a, const char *b, const char *args) {
  return EVENT_SLACK + 6 * (strlen(a) + (b ? strlen(b) : 0)) + (args ? strlen(args) : 0);
}

static void ev_name_cat(ev_t *e, const char *name, const char *cat) {
  EV_LIT(e, ",\"name\":");
  ev_str(e, name);
  if (cat) {
    EV_LIT(e, ",\"cat\":");
    ev_str(e, cat);
  }
}

void cr_trace_name(int pid, const char *name) {
  if (trace_fd < 0) return;
  static const char *const kinds[] = {"process_name", "thread_name"};
  int64_t ts = cr_trace_now();
  for (int i = 0; i < 2; i++) {
    ev_t e;
    if (ev_begin(&e, ev_need(name, NULL, NULL) + 32, ts) < 0) return;
    ev_head(&e, 'M', pid, 0);
    ev_name_cat(&e, kinds[i], NULL);
    EV_LIT(&e, ",\"args\":{\"name\":");
    ev_str(&e, name);
    EV_LIT(&e, "}");
    ev_end(&e, NULL, ts);
  }
}

void cr_trace_slice(int pid, const char *name, const char *cat, int64_t t0, int64_t t1, const char *args) {
  if (trace_fd < 0) return;
  ev_t e;
  if (ev_begin(&e, ev_need(name, cat, args), t1) < 0) return;
  ev_head(&e, 'X', pid, t0);
  EV_LIT(&e, ",\"dur\":");
  ev_us(&e, t1 > t0 ? t1 - t0 : 0);
  ev_name_cat(&e, name, cat);
  ev_end(&e, args, t1);
}

/* What every slice of one task name has between its dur and its batch
 * number: ,"name":NAME,"cat":"task","args":{"batch": -- made again only
 * when the name changes (a pool's tasks have one name a call), so the hot
 * path copies it instead of escaping the name for every task. */
static char *task_name, *task_mid;
static size_t task_name_len, task_mid_len;

static void put_task(int64_t t0, int64_t t1, int64_t batch, int64_t task, int64_t tasks, int64_t items) {
  ev_t e;
  if (ev_begin(&e, EVENT_SLACK + task_mid_len + 96, t1) < 0) return;
  ev_head(&e, 'X', 0, t0);
  EV_LIT(&e, ",\"dur\":");
  ev_us(&e, t1 > t0 ? t1 - t0 : 0);
  ev_put(&e, task_mid, task_mid_len);
  ev_int(&e, batch);
  EV_LIT(&e, ",\"task\":");
  ev_int(&e, task);
  EV_LIT(&e, ",\"tasks\":");
  ev_int(&e, tasks);
  EV_LIT(&e, ",\"items\":");
  ev_int(&e, items);
  EV_LIT(&e, "}");
  ev_end(&e, NULL, t1);
}

static void end_run(void) {
  if (run.tasks == 0) return;
  put_task(run.t0, run.t1, run.batch, run.task, run.tasks, run.items);
  run.tasks = 0;
}

/* Makes task_mid the one of name (the open run, of the name before, is
 * written first); -1 when there is no memory for it. */
static int task_mid_for(const char *name) {
  size_t len = strlen(name);
  if (task_name && len == task_name_len && memcmp(name, task_name, len) == 0) return 0;
  end_run();
  static const char before[] = ",\"name\":", after[] = ",\"cat\":\"task\",\"args\":{\"batch\":";
  size_t cap = sizeof before + 6 * len + 8 + sizeof after; /* 6 a byte escaped, quotes, NUL */
  char *mid = malloc(cap), *copy = malloc(len + 1);
  size_t n = sizeof before - 1;
  int q = -1;
  if (mid) {
    memcpy(mid, before, n);
    q = cr_trace_json_string(mid + n, cap - n - (sizeof after - 1), name, len);
  }
  if (q < 0 || !copy) {
    free(mid);
    free(copy);
    return -1;
  }
  n += (size_t)q;
  memcpy(mid + n, after, sizeof after - 1);
  free(task_mid);
  free(task_name);
  task_mid = mid;
  task_mid_len = n + sizeof after - 1;
  task_name = memcpy(copy, name, len + 1);
  task_name_len = len;
  return 0;
}

void cr_trace_task(const char *name, int64_t t0, int64_t t1, int64_t batch, int64_t task, int64_t items) {
  if (trace_fd < 0 || task_mid_for(name) < 0) return;
  int brief = t1 - t0 < CR_TRACE_BRIEF_NS;
  if (run.tasks > 0 && (!brief || batch != run.batch || task != run.task + run.tasks || t1 - run.t0 >= CR_TRACE_RUN_NS))
    end_run();
  if (!brief) {
    put_task(t0, t1, batch, task, 1, items);
    return;
  }
  if (run.tasks == 0) {
    run.t0 = t0;
    run.batch = batch;
    run.task = task;
    run.items = 0;
  }
  run.t1 = t1;
  run.tasks++;
  run.items += items;
}

void cr_trace_instant(int pid, const char *name, const char *cat, int64_t ts, const char *args) {
  if (trace_fd < 0) return;
  ev_t e;
  if (ev_begin(&e, ev_need(name, cat, args), ts) < 0) return;
  ev_head(&e, 'i', pid, ts);
  EV_LIT(&e, ",\"s\":\"t\"");
  ev_name_cat(&e, name, cat);
  ev_end(&e, args, ts);
}

void cr_trace_counter(int pid, const char *name, int64_t ts, const char *args) {
  if (trace_fd < 0) return;
  ev_t e;
  if (ev_begin(&e, ev_need(name, NULL, args), ts) < 0) return;
  ev_head(&e, 'C', pid, ts);
  ev_name_cat(&e, name, NULL);
  ev_end(&e, args ? args : "{}", ts);
}

void cr_trace_flow(char ph, const char *name, const char *cat, uint64_t id, int64_t ts) {
  if (trace_fd < 0 || !(ph == 's' || ph == 't' || ph == 'f')) return;
  ev_t e;
  if (ev_begin(&e, ev_need(name, cat, NULL) + 48, ts) < 0) return;
  ev_head(&e, ph, 0, ts);
  ev_name_cat(&e, name, cat ? cat : "flow");
  EV_LIT(&e, ",\"id\":");
  ev_uint(&e, id);
  EV_LIT(&e, ",\"bp\":\"e\"");
  ev_end(&e, NULL, ts);
}
