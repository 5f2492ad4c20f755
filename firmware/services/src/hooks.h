/* What the program supplied through hil_services_set_* (internal accessors). */
#ifndef HIL_HOOKS_H
#define HIL_HOOKS_H

#include <stdint.h>

#include "hil_services.h"

/* The MAC, or NULL when the program set none. */
const uint8_t *hil_hooks_mac(void);
/* 0 with *out filled, -1 when there is no provider or it failed. */
int hil_hooks_stats(hil_stats_t *out);
void hil_hooks_event(const char *members);
/* Never returns. */
void hil_hooks_crash(const char *kind, const char *task);
const hil_services_faults_t *hil_hooks_faults(void);

#endif /* HIL_HOOKS_H */
