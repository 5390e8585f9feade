/* corral engine: the trace sink.
 *
 * One file of Chrome trace events (the JSON array form that Perfetto and
 * chrome://tracing open) for every process of a program. The process that
 * opens it writes "[\n"; every event is then one complete JSON object
 * followed by ",\n". Each process buffers its own events and appends whole
 * events with one write() on an O_APPEND descriptor, so events of several
 * processes never mix, and a process killed at any instruction loses only
 * what it had not flushed yet: the file stays loadable (the array with no
 * closing bracket is valid Trace Event Format).
 *
 * A process flushes when its buffer fills, when its oldest buffered event
 * is CR_TRACE_FLUSH_NS old (checked as it adds events), before it sleeps in
 * a wait, before it forks, and when it ends normally. A forked child keeps
 * the parent's descriptor; a spawned child opens the same path again
 * (the bindings pass it on).
 *
 * Tracks: pid is the OS pid and tid the same number (one thread per
 * process). Timestamps are CLOCK_MONOTONIC nanoseconds, written as
 * microseconds: one clock for every process on the machine.
 *
 * Tracing off, every function below returns at once: callers on hot paths
 * test cr_trace_on() first. */
#ifndef CORRAL_TRACE_H
#define CORRAL_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define CR_TRACE_FLUSH_NS 50000000LL /* 50 ms: the most a killed process loses */

/* Opens the sink at path. create: truncates the file and writes the
 * opening "[" (the process that starts a trace); else appends to it (a
 * spawned child joining its parent's trace). A sink already open in this
 * process is flushed and closed first. Returns 0, or -errno from open(2)
 * or write(2) (nothing open then). */
int cr_trace_open(const char *path, int create);

/* Flushes and closes the sink in this process; tracing is off. In a
 * process that opened it with create, first writes the end of this
 * process's lifetime slice. Nothing happens when no sink is open. */
void cr_trace_close(void);

/* Whether this process writes a trace. */
int cr_trace_on(void);

/* The path of the open sink (made absolute), or NULL. */
const char *cr_trace_path(void);

/* Writes what this process buffered (the open run of brief tasks
 * included: cr_trace_task). Errors are ignored: a trace that cannot be
 * written must not break the program. */
void cr_trace_flush(void);

/* Drops what is buffered without writing it (a forked child: its copy of
 * the parent's buffer is the parent's). The engine calls it. */
void cr__trace_after_fork(void);

/* At the normal end of the process: the opener's lifetime slice, then a
 * flush. The engine calls it from cr_engine_finish; cr_trace_open registers
 * it with atexit() too (for a process that never opened an engine). */
void cr__trace_at_exit(void);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t cr_trace_now(void);

/* ---- events ----------------------------------------------------------------
 * name and cat are plain strings (escaped here); args is the text of a
 * JSON object ("{\"k\":1}") or NULL; pid 0 means this process. */

/* ph "M": names pid's process and thread tracks. */
void cr_trace_name(int pid, const char *name);
/* ph "X": a slice from t0 to t1 (ns). */
void cr_trace_slice(int pid, const char *name, const char *cat, int64_t t0, int64_t t1, const char *args);
/* ph "X" of category "task" with args {batch, task, tasks, items}: a pool
 * task, the hot path. A task shorter than CR_TRACE_BRIEF_NS is not a slice
 * of its own: brief tasks of one batch that run back to back (task numbers
 * in a row, same name) share one slice, task the first one's number, tasks
 * how many, items their items, up to CR_TRACE_RUN_NS long. Writing an event
 * costs about what such a task does, and one slice a microsecond would
 * make the trace as slow as the work it shows. The shared slice is written
 * when the run ends: at the next task that does not extend it, or at
 * cr_trace_flush. */
#define CR_TRACE_BRIEF_NS 10000LL  /* 10 us */
#define CR_TRACE_RUN_NS 1000000LL  /* 1 ms */
void cr_trace_task(const char *name, int64_t t0, int64_t t1, int64_t batch, int64_t task, int64_t items);
/* ph "i": an instant at ts, scoped to pid's thread track. */
void cr_trace_instant(int pid, const char *name, const char *cat, int64_t ts, const char *args);
/* ph "C": counter values at ts; args holds the series ({"queued":3}). */
void cr_trace_counter(int pid, const char *name, int64_t ts, const char *args);
/* ph "s", "t" or "f": a flow step of flow id, bound to the slice that
 * encloses ts on this process's track. */
void cr_trace_flow(char ph, const char *name, const char *cat, uint64_t id, int64_t ts);

/* Appends s to out as a JSON string (quotes included), at most cap bytes
 * with the terminating NUL; returns the length written, or -1 when it does
 * not fit (out is then unspecified). */
int cr_trace_json_string(char *out, size_t cap, const char *s, size_t len);

#endif
