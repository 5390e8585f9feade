/* corral: a process orchestration engine on libuv.
 *
 * The public header, read as a table of contents:
 *   errors.h  return codes and their names, kinds and messages
 *   arena.h   the shared arena: offsets, allocation, shared objects
 *   engine.h  the engine instance, its loop, waiting, SIGINT during waits
 *   proc.h    child processes: fork and spawn, join, signal, exit codes
 *   sync.h    locks, semaphores, events, conditions, barriers
 *   shm.h     shared Values and Arrays
 *   chan.h    channels: the queue and pipe under Queue and Pipe
 *   managed.h managed objects: the shared lists, dicts, namespaces of Manager
 *   refs.h    the references each process holds, given back when it ends
 *   trace.h   the trace sink: Chrome trace events from every process
 *   log.h     the logger: leveled lines on stderr
 *   redis.h   the Redis backend: queues and pools across machines (only
 *             when built with CORRAL_REDIS)
 *   watch.h   watches: a queue's messages served from the engine's loop
 *   embed.h   embedding: the engine on a host's loop, the Lua module in its state */
#ifndef CORRAL_H
#define CORRAL_H

#define CORRAL_VERSION "0.1.0"

#include "corral/errors.h"
#include "corral/arena.h"
#include "corral/engine.h"
#include "corral/proc.h"
#include "corral/sync.h"
#include "corral/shm.h"
#include "corral/chan.h"
#include "corral/managed.h"
#include "corral/refs.h"
#include "corral/trace.h"
#include "corral/log.h"
#ifdef CORRAL_REDIS
#include "corral/redis.h"
#endif
#include "corral/watch.h"
#include "corral/embed.h"

#endif
