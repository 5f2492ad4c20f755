/* hil-services: the firmware's portable services on the host's own sockets (the virtual board's linux arm). */
#include "program.h"

int main(int argc, char **argv)
{
    return hil_program_run(argc, argv);
}
