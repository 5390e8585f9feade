/* corral bindings: the list of a file's live handles (lqueue.c, lpipe.c,
 * manager.c), so that a forked child can take its own references (and pipe
 * holds) for the handles it inherits: the parent may drop its own at any
 * time. */
#ifndef CORRAL_LCHAN_H
#define CORRAL_LCHAN_H

#include "corral_lua.h"

/* A handle userdata that sits in its file's list of live handles. */
typedef struct crL_chanud_s {
  crL_handle_t h;
  struct crL_chanud_s *prev, *next;
} crL_chanud_t;

static inline void crL__link(crL_chanud_t **head, crL_chanud_t *u) {
  u->prev = NULL;
  u->next = *head;
  if (*head) (*head)->prev = u;
  *head = u;
}

static inline void crL__unlink(crL_chanud_t **head, crL_chanud_t *u) {
  if (u->prev) u->prev->next = u->next;
  else if (*head == u) *head = u->next;
  if (u->next) u->next->prev = u->prev;
  u->prev = u->next = NULL;
}

#endif
