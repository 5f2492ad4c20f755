/* The program's hooks into the services: identity, stats, events, crashes, faults. Set once at start-up,
 * before the services run, then only read. */
#include "hooks.h"

#include <stdlib.h>
#include <string.h>

static uint8_t mac[6];
static int mac_set;
static hil_stats_fn stats_fn;
static void *stats_arg;
static hil_event_fn event_fn;
static void *event_arg;
static hil_crash_fn crash_fn;
static void *crash_arg;
static hil_services_faults_t faults;

void hil_services_set_mac(const uint8_t new_mac[6])
{
    memcpy(mac, new_mac, sizeof mac);
    mac_set = 1;
}

const uint8_t *hil_hooks_mac(void)
{
    return mac_set ? mac : NULL;
}

void hil_services_set_stats_provider(hil_stats_fn fn, void *arg)
{
    stats_fn = fn;
    stats_arg = arg;
}

int hil_hooks_stats(hil_stats_t *out)
{
    memset(out, 0, sizeof *out);
    return stats_fn != NULL ? stats_fn(out, stats_arg) : -1;
}

void hil_services_set_event_hook(hil_event_fn fn, void *arg)
{
    event_fn = fn;
    event_arg = arg;
}

void hil_hooks_event(const char *members)
{
    if (event_fn != NULL) {
        event_fn(members, event_arg);
    }
}

void hil_services_set_crash_hook(hil_crash_fn fn, void *arg)
{
    crash_fn = fn;
    crash_arg = arg;
}

void hil_hooks_crash(const char *kind, const char *task)
{
    if (crash_fn != NULL) {
        crash_fn(kind, task, crash_arg);
    }
    abort();
}

void hil_services_set_faults(const hil_services_faults_t *new_faults)
{
    faults = *new_faults;
}

const hil_services_faults_t *hil_hooks_faults(void)
{
    return &faults;
}
