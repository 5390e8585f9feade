/* The parts of the C module, each opened into the core table by
 * crL_open_NAME(L) (core table on top of the stack). One line per part. */
CRL_PART(errors)
CRL_PART(codec)
CRL_PART(misc)
CRL_PART(proc)
CRL_PART(sync)
CRL_PART(shm)
CRL_PART(queue)
CRL_PART(pipe)
CRL_PART(manager)
CRL_PART(trace)
CRL_PART(redis)
CRL_PART(watch)
#ifdef CORRAL_TESTING
CRL_PART(testing)
#endif
