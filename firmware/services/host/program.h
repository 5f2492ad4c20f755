/* The hil-services program (options, services, stdin/stdout protocol; firmware/services/README.md), for the
 * Linux program and for the virtual board's native firmware. */
#ifndef HIL_PROGRAM_H
#define HIL_PROGRAM_H

#include <stddef.h>

/* What a program around the services adds (the native virtual firmware, firmware/host/app): its stack's
 * name, the faults it implements, its own console commands and diagnostic counters. */
typedef struct {
    const char *stack;  /* "stack" in the ready line (NULL: left out) */
    const char *faults; /* HIL_FAULTS names the caller implements, comma-separated (NULL: none) */
    /* A console command of the caller (ip, heap, sockets, ...): writes its HIL_RESULT members (no braces,
     * "cmd" and "ok" first) to out and returns 1, or returns 0 for a command word it does not know. */
    int (*command)(int argc, char **argv, char *out, size_t len);
    /* More members for the "net" object of the stats reply (counters beyond HIL_STATS). */
    int (*stats_extra)(char *out, size_t len);
} hil_program_hooks_t;

/* Call before hil_program_run. */
void hil_program_set_hooks(const hil_program_hooks_t *hooks);

/* Check the options as hil_program_run will read them (exits 2 with the usage on a bad one), so a caller can
 * refuse bad options before it starts anything. */
void hil_program_check(int argc, char **argv);

/* Parse the options, start the services, print the ready line, then answer stdin commands until `quit` or
 * EOF. Hooks installed before the call (hil_services_set_stats_provider, hil_services_set_mac,
 * hil_services_set_l2_driver, hil_program_set_hooks) stay unless an option (--stats-iface, --mac) replaces
 * them. Returns the exit status; exits 2 on bad options. */
int hil_program_run(int argc, char **argv);

/* Print one event line, {members}, as the program prints the services' events (any thread). */
void hil_program_event(const char *members);

/* Crash as the services' crash faults do: print the crash event line and exit with status 70. */
void hil_program_crash(const char *kind, const char *task);

#endif /* HIL_PROGRAM_H */
