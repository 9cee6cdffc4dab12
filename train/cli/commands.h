#pragma once
// Subcommands of the `tessera` tool. Each returns the process exit code.
namespace tessera::cli {
int simulate(int argc, char** argv);
int info(int argc, char** argv);
int reconstruct(int argc, char** argv);
int plan(int argc, char** argv);
int frc(int argc, char** argv);
}  // namespace tessera::cli
