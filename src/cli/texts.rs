//! The texts fleet-init prints on request: `--help` (laid out as the SPEC's usage block) and
//! `-l` (the license, as tini's `-l` prints its own).

pub const HELP: &str = "\
fleet-init: a container init (PID 1) that reaps zombies, forwards signals and supervises workers.

Usage:
  fleet-init [OPTIONS] -- COMMAND [ARG...]   one worker, tini-style
  fleet-init [OPTIONS] --config FILE         the workers in FILE
  fleet-init --reap [--state-dir DIR]        consume handoff files, kill orphans, exit
  fleet-init --check-config FILE             validate FILE, print what is wrong, exit
  fleet-init ctl [--state-dir DIR] VERB ...  talk to a running fleet-init (ctl --help)
  fleet-init --version | --help

Options (each also settable by the environment variable in brackets):
  --config FILE             the workers' config file (JSON) [FLEET_INIT_CONFIG]
  --state-dir DIR           the handoff registry, default /run/fleet-init [FLEET_INIT_STATE_DIR]
  --grace-ms N              shutdown grace before SIGKILL, default 8000 [FLEET_INIT_GRACE_MS]
  --events stdout|stderr|off
                            where fleet-init's JSON-line events go; default stderr with a
                            command, stdout with --config [FLEET_INIT_EVENTS]
  --restart never|on-failure|always
                            single-command mode; default never
  --max-crashes N           single-command mode: crashes that stop the restarts, default 5
  --max-rss-mb N            single-command mode: memory limit of the child's tree in MiB
  --remap-exit CODE         report that child exit code as 0 (repeatable)
  --pdeathsig SIGNAL        the workers' parent-death signal
  FLEET_INIT_LOG=LEVEL      diagnostics on stderr: off, error, warn, info, debug or trace

tini's and dumb-init's flags, so that their ENTRYPOINTs keep working:
  -s                        subreaper (accepted: fleet-init is one anyway) [TINI_SUBREAPER]
  -g                        signal the child's process group (accepted: the default)
                            [TINI_KILL_PROCESS_GROUP]
  -e CODE                   as --remap-exit
  -p SIGNAL                 the signal fleet-init gets when its own parent dies
  -v, -vv, -vvv             more verbose diagnostics on stderr [TINI_VERBOSITY]
  -w                        warn when reaping a zombie that was not a worker
  -l                        print the license and exit
  -c, --single-child        signals go to the child only, not its group [DUMB_INIT_SETSID=0]
  -r, --rewrite S:T         forward signal S as T; T 0 drops S (repeatable)
  -h, --help                print this help and exit
  -V, --version             print the version and exit
";

pub const LICENSE: &str = "\
The MIT License (MIT)

Copyright (c) fleet-init contributors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the \"Software\"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
";
