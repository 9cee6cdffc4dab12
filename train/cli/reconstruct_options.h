#pragma once
// The settings of `tessera reconstruct`, one definition each
// (train/cli/option_table.h): the options, the run-file keys and the record
// a result stores all come from this table.
#include "train/cli/option_table.h"

namespace tessera::cli {

// Every option of `tessera reconstruct`, the loading options included.
OptionTable reconstruct_option_table();

// The command's cxxopts options from that table, DATA positional.
cxxopts::Options reconstruct_command_options(const OptionTable& table);

}  // namespace tessera::cli
