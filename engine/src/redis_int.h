/* corral engine: what the Redis backend's files share (corral/redis.h). */
#ifndef CORRAL_REDIS_INT_H
#define CORRAL_REDIS_INT_H

/* CLOCK_MONOTONIC seconds. */
double cr__redis_now(void);
/* Sleeps s seconds (through EINTR). */
void cr__redis_sleep(double s);

#endif
