#include "cli/commands.h"

int main(int argc, char** argv) { return benchfleet::RunCli(argc, argv); }
