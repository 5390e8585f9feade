/* An embedding host: a program with a libuv loop of its own that runs Lua
 * scripts using corral, and never blocks while they work.
 *
 *   cc host.c $(pkg-config --cflags --libs corral) -o host
 *   ./host
 *
 * It keeps a 10 ms repeating timer (its own work, standing for a UI or a
 * server), opens corral on its loop and the Lua module in its lua_State,
 * runs SCRIPT, which starts a CPU-bound map_async over a Pool(2) whose
 * callback reports back, a small pipeline started in the background
 * whose on_done callback prints its results, and a Lua worker process
 * that answers the strings the host sends it through a Queue (made and
 * read from C, with the C API). Then it only runs uv_run: the pool's
 * results, the pipeline's, their callbacks and the answers all arrive from
 * the loop. At the end it prints how often the timer ticked while the pool
 * and the pipeline worked, and its worst lateness, and checks that
 * uv_loop_close returns 0. Walked through in docs/embedding.md. */
#include <corral.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#ifndef CORRAL_WORKER
#define CORRAL_WORKER NULL /* $CORRAL_EXE, else the installed corral */
#endif

#define TICK_MS 10
#define MESSAGES 3

static const char SCRIPT[] =
  "local jobs, answers = ...\n"
  "local mp = require 'corral'\n"
  "local pool = mp.Pool(2)\n"
  "local function burn(n)\n"
  "  local s = 0\n"
  "  for i = 1, n do s = (s + i * i) % 1000003 end\n"
  "  return s\n"
  "end\n"
  "local items = {}\n"
  "for i = 1, 8 do items[i] = 3000000 + i end\n"
  "pool:map_async(burn, items, 1, { callback = function(r)\n"
  "  print(('map: %d results, first %d, last %d'):format(#r, r[1], r[#r]))\n"
  "  host_done('map')\n"
  "end })\n"
  "-- a pipeline in the background: two workers burn, the parent keeps the odd results\n"
  "local steps = {}\n"
  "for i = 1, 12 do steps[i] = 200000 + i end\n"
  "local pipe = mp.pipeline(steps):map(burn, { workers = 2 })\n"
  "  :filter(function(s) return s % 2 == 1 end)\n"
  "  :start{ on_done = function(r, stats)\n"
  "    print(('pipeline: %d results of %d items, first %d, last %d'):format(#r, stats.items, r[1], r[#r]))\n"
  "    host_done('pipeline')\n"
  "  end, on_error = function(err)\n"
  "    print('pipeline failed: ' .. tostring(err))\n"
  "    host_done('pipeline')\n"
  "  end }\n"
  "-- a Lua worker answering the host: upper-cases what it gets\n"
  "local p = mp.Process{ target = function(inq, outq)\n"
  "  for msg in inq:iter() do outq:put('lua says ' .. msg:upper()) end\n"
  "end, args = { jobs, answers } }\n"
  "p:start()\n"
  "host_done('started')\n"
  "return function()\n"
  "  pool:close(); pool:join(); p:join()\n"
  "  pipe:get() -- ended already: its results, or its error raised\n"
  "  return p.exitcode\n"
  "end\n";

static struct {
  uv_loop_t loop;
  uv_timer_t timer;
  cr_engine_t *engine;
  cr_off_t jobs, answers;
  cr_watch_t *answer_watch;
  int map_done, pipeline_done, answers_got;
  int pool_running, pipeline_running;
  unsigned ticks, ticks_in_pool, ticks_in_pipeline;
  uint64_t last_tick_ns;
  double worst_late_ms, worst_late_pipeline_ms;
  uv_prepare_t before_poll; /* with after_poll: how long callbacks hold the loop */
  uv_check_t after_poll;
  uint64_t poll_start_ns, poll_start_idle;
  double poll_start_cpu_ms;
  double longest_busy_ms, longest_cpu_ms;
} host;

static void check(int rc, const char *what) {
  if (rc >= 0) return;
  fprintf(stderr, "host: %s: %s\n", what, cr_strerror(rc));
  exit(1);
}

static void maybe_stop(void) {
  if (!host.map_done || !host.pipeline_done || host.answers_got < MESSAGES) return;
  uv_timer_stop(&host.timer);
  cr_queue_close(cr_engine_arena(host.engine), host.jobs); /* the Lua worker's iter() ends */
}

/* host_done(what): the script reports from its callbacks. */
static int l_host_done(lua_State *L) {
  const char *what = luaL_checkstring(L, 1);
  if (strcmp(what, "started") == 0) {
    host.pool_running = 1;
    host.pipeline_running = 1;
  } else if (strcmp(what, "map") == 0) {
    host.pool_running = 0;
    host.map_done = 1;
    maybe_stop();
  } else if (strcmp(what, "pipeline") == 0) {
    host.pipeline_running = 0;
    host.pipeline_done = 1;
    maybe_stop();
  }
  return 0;
}

static void on_tick(uv_timer_t *t) {
  (void)t;
  uint64_t now = uv_hrtime();
  if (host.last_tick_ns) {
    double late = (double)(now - host.last_tick_ns) / 1e6 - TICK_MS;
    if (late > host.worst_late_ms) host.worst_late_ms = late;
    if (host.pipeline_running && late > host.worst_late_pipeline_ms) host.worst_late_pipeline_ms = late;
  }
  host.last_tick_ns = now;
  host.ticks++;
  if (host.pool_running) host.ticks_in_pool++;
  if (host.pipeline_running) host.ticks_in_pipeline++;
}

/* The Lua worker answered: take every answer there is, without waiting. */
static void on_answer(cr_watch_t *w, void *data) {
  (void)w;
  (void)data;
  char *s;
  size_t len;
  while (corral_get_string(host.engine, host.answers, &s, &len, 0) == 0) {
    printf("answer: %s\n", s);
    free(s);
    host.answers_got++;
  }
  maybe_stop();
}

static double thread_cpu_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Around each poll: the time its callbacks (corral's among them) ran is
 * the poll's length less the time the loop slept in it; the CPU they used
 * leaves out the time this process waited for a CPU on a busy machine. */
static void on_before_poll(uv_prepare_t *h) {
  host.poll_start_ns = uv_hrtime();
  host.poll_start_idle = uv_metrics_idle_time(h->loop);
  host.poll_start_cpu_ms = thread_cpu_ms();
}

static void on_after_poll(uv_check_t *h) {
  uint64_t slept = uv_metrics_idle_time(h->loop) - host.poll_start_idle;
  double busy = (double)(uv_hrtime() - host.poll_start_ns - slept) / 1e6;
  double cpu = thread_cpu_ms() - host.poll_start_cpu_ms;
  if (busy > host.longest_busy_ms) host.longest_busy_ms = busy;
  if (cpu > host.longest_cpu_ms) host.longest_cpu_ms = cpu;
}

static void on_lua_error(lua_State *L, void *ud) {
  (void)ud;
  fprintf(stderr, "host: a callback failed: %s\n", lua_tostring(L, -1));
}

int main(void) {
  printf("corral %s (headers %d.%d.%d)\n", corral_version(), CORRAL_VERSION_MAJOR, CORRAL_VERSION_MINOR,
         CORRAL_VERSION_PATCH);
  check(uv_loop_init(&host.loop), "uv_loop_init");
  check(uv_loop_configure(&host.loop, UV_METRICS_IDLE_TIME), "uv_loop_configure");
  uv_timer_init(&host.loop, &host.timer);
  uv_prepare_init(&host.loop, &host.before_poll);
  uv_check_init(&host.loop, &host.after_poll);

  corral_options_t opts = {.loop = &host.loop, .worker = CORRAL_WORKER};
  check(corral_open(&host.engine, &opts), "corral_open");
  cr_arena_t *arena = cr_engine_arena(host.engine);
  check(cr_queue_new(arena, 0, 0, &host.jobs), "cr_queue_new");
  check(cr_queue_new(arena, 0, 0, &host.answers), "cr_queue_new");

  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  corral_set_error_handler(L, on_lua_error, NULL);
  corral_openlib(L, host.engine);
  lua_pop(L, 1);
  lua_register(L, "host_done", l_host_done);

  /* Run the script: it starts the work and returns at once. */
  if (luaL_loadbuffer(L, SCRIPT, sizeof SCRIPT - 1, "=script") != LUA_OK) goto lua_failed;
  corral_pushqueue(L, host.jobs);
  corral_pushqueue(L, host.answers);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) goto lua_failed;
  int finish = luaL_ref(L, LUA_REGISTRYINDEX);

  check(cr_queue_watch(host.engine, host.answers, on_answer, NULL, &host.answer_watch), "cr_queue_watch");
  static const char *const words[MESSAGES] = {"hello", "from", "c"};
  for (int i = 0; i < MESSAGES; i++)
    check(corral_put_string(host.engine, host.jobs, words[i], strlen(words[i]), -1), "put");

  uv_prepare_start(&host.before_poll, on_before_poll);
  uv_check_start(&host.after_poll, on_after_poll);
  uv_unref((uv_handle_t *)&host.before_poll); /* measuring keeps nothing alive */
  uv_unref((uv_handle_t *)&host.after_poll);
  uv_timer_start(&host.timer, on_tick, TICK_MS, TICK_MS);
  uv_run(&host.loop, UV_RUN_DEFAULT); /* ends when the timer stops: corral's handles do not hold it */

  /* Done: let the pool and the worker end (this waits, which is fine now). */
  lua_rawgeti(L, LUA_REGISTRYINDEX, finish);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) goto lua_failed;
  printf("lua worker exit code: %d\n", (int)lua_tointeger(L, -1));
  cr_watch_stop(host.answer_watch);
  lua_close(L);
  cr_queue_release(arena, host.jobs);
  cr_queue_release(arena, host.answers);
  corral_close(host.engine);
  uv_close((uv_handle_t *)&host.timer, NULL);
  uv_close((uv_handle_t *)&host.before_poll, NULL);
  uv_close((uv_handle_t *)&host.after_poll, NULL);
  uv_run(&host.loop, UV_RUN_DEFAULT);
  printf("timer: %u ticks, %u while the pool worked, %u while the pipeline worked, worst lateness %.2f ms "
         "(%.2f ms while the pipeline worked)\n",
         host.ticks, host.ticks_in_pool, host.ticks_in_pipeline, host.worst_late_ms, host.worst_late_pipeline_ms);
  printf("loop: callbacks held it at most %.2f ms at a time, using at most %.2f ms of CPU\n",
         host.longest_busy_ms, host.longest_cpu_ms);
  int rc = uv_loop_close(&host.loop);
  printf("uv_loop_close: %d\n", rc);
  return rc == 0 && host.map_done && host.pipeline_done && host.answers_got == MESSAGES ? 0 : 1;

lua_failed:
  fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
  lua_close(L);
  return 1;
}
