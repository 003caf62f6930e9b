// poolgate: an HTTP/1.1 reverse proxy and upstream connection pooler.
#include "process/cli.h"

int main(int argc, char** argv) { return poolgate::runCli(argc, argv); }
