#pragma once
// Where a run's results go, checked before any work is done, so that a run
// never destroys its own input and a finished run is never lost at its last
// step (writing the result).
#include <string>
#include <vector>

namespace tessera {

// Throws SettingsError naming the path and the problem when
//  - an output (the result or a file written beside it) is one of `inputs`:
//    the same file, however spelled (./x, a symlink, a hard link: same inode);
//  - the result exists and is not a tessera result file (a data file, say),
//    unless `overwrite`;
//  - the result's directory does not exist or does not take a new file (tested
//    by creating and removing one: read-only mounts and permissions included).
void check_output_location(const std::string& result, const std::vector<std::string>& also_written,
                           const std::vector<std::string>& inputs, bool overwrite);

}  // namespace tessera
