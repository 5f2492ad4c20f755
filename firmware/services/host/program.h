/* The hil-services program (options, services, stdin/stdout protocol; firmware/services/README.md), for the
 * Linux program and for the virtual board's native firmware. */
#ifndef HIL_PROGRAM_H
#define HIL_PROGRAM_H

/* Parse the options, start the services, print the ready line, then answer stdin commands until `quit` or
 * EOF. Hooks installed before the call (hil_services_set_stats_provider, hil_services_set_mac) stay unless
 * an option (--stats-iface, --mac) replaces them. Returns the exit status; exits 2 on bad options. */
int hil_program_run(int argc, char **argv);

#endif /* HIL_PROGRAM_H */
