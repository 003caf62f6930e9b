// The command line (README "Signals and command line"): poolgate [-c FILE] [-t] [-s SIGNAL] [-p PREFIX] [-V] [-h]
#pragma once

namespace poolgate {

// Returns the process exit status: 0 normal, 1 configuration or start-up
// error, 2 usage error.
int runCli(int argc, char** argv);

}  // namespace poolgate
