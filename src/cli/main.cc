// cove: command-line client of coved.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "sys/io.h"

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Trims surrounding whitespace (a token file usually ends with '\n').
std::string Trim(std::string s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  size_t e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app{"cove: create and use sandboxes on a coved daemon", "cove"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand too

  std::string url = Env("COVE_URL");
  std::string token = Env("COVE_TOKEN");
  std::string state_dir = Env("COVE_STATE_DIR");
  bool json_out = false;
  app.add_option("--url", url, "coved base URL (env COVE_URL; default http://127.0.0.1:7070)");
  app.add_option("--token", token,
                 "API token (env COVE_TOKEN; default: read STATE_DIR/api-token)");
  app.add_option("--state-dir", state_dir,
                 "coved state directory, to find the token (default /var/lib/cove)");
  app.add_flag("--json", json_out, "print the server's JSON (for scripts)");

  cove::cli::CreateOptions create;
  auto* c_create = app.add_subcommand("create", "create a sandbox and print its id");
  c_create->add_option("--id", create.id, "sandbox id (1-63 of [a-z0-9-]; default generated)");
  c_create->add_option("--type", create.type, "instance type (lite, basic, standard-1..4)");
  c_create->add_option("--image", create.image, "image name (default: the host-derived image)");
  c_create->add_option("--env", create.env, "environment variable K=V (repeatable)");
  c_create->add_option("--label", create.labels, "label K=V (repeatable)");

  auto* c_ls = app.add_subcommand("ls", "list sandboxes");
  std::string info_id;
  auto* c_info = app.add_subcommand("info", "show one sandbox");
  c_info->add_option("ID", info_id)->required();
  std::vector<std::string> rm_ids;
  auto* c_rm = app.add_subcommand("rm", "delete sandboxes (no error if absent)");
  c_rm->add_option("ID", rm_ids)->required();

  cove::cli::ExecOptions exec;
  auto* c_exec = app.add_subcommand(
      "exec", "run a command in a sandbox, stream its output, exit with its exit code");
  c_exec->add_option("ID", exec.id)->required();
  c_exec->add_option("CMD", exec.argv, "command and arguments (after --)")->required();
  c_exec->add_option("--session", exec.session, "session id (shell state persists in it)");
  c_exec->add_option("--cwd", exec.cwd, "working directory");
  c_exec->add_option("--env", exec.env, "environment variable K=V (repeatable)");
  c_exec->add_option("--timeout", exec.timeout_ms, "kill the command after MS milliseconds")
      ->check(CLI::PositiveNumber);
  c_exec->footer("Example: cove exec sb-1 -- bash -c 'echo $HOME | wc -c'");

  std::string cp_src, cp_dst;
  auto* c_cp = app.add_subcommand("cp", "copy a file into (LOCAL ID:PATH) or out of (ID:PATH LOCAL) a sandbox; - is stdin/stdout");
  c_cp->add_option("SRC", cp_src)->required();
  c_cp->add_option("DST", cp_dst)->required();

  std::string shell_id, shell_session = "shell";
  auto* c_shell = app.add_subcommand(
      "shell", "open an interactive terminal in a sandbox; exits with the shell's status");
  c_shell->add_option("ID", shell_id)->required();
  c_shell->add_option("--session", shell_session,
                      "terminal session (default \"shell\"); a session keeps its shell when "
                      "cove is killed or disconnected, and attaching again resumes it");
  c_shell->footer("Stdin from a pipe works too: printf 'ls\\n' | cove shell sb-1");

  cove::cli::RunOptions run;
  auto* c_run = app.add_subcommand(
      "run", "run code in an interpreter context of a sandbox: a file, stdin, or a REPL");
  c_run->add_option("ID", run.id)->required();
  c_run->add_option("FILE", run.file,
                    "code to run as one execution; - or a pipe on stdin: stdin; none with a "
                    "terminal: an interactive prompt");
  c_run->add_option("--lang", run.language, "python (default), javascript or typescript")
      ->check(CLI::IsMember({"python", "javascript", "typescript"}));
  c_run->add_option("--context", run.context,
                    "use this existing context (kept) instead of creating one (deleted at exit)");
  c_run->add_option("--timeout", run.timeout_ms,
                    "interrupt each execution after MS milliseconds (exit status 124)")
      ->check(CLI::PositiveNumber);
  c_run->footer(
      "Output streams as it comes; a result's text (or JSON) is printed, images are saved as\n"
      "cove-result-N.png/.jpg/.svg and HTML-only results as cove-result-N.html in the current\n"
      "directory. Exit status: 0 ok, 1 the code raised an error, 2 usage or API error,\n"
      "124 timed out.\n"
      "Example: cove run sb-1 analysis.py; echo 'console.log(1+1)' | cove run sb-1 --lang javascript");

  auto* c_image = app.add_subcommand("image", "manage images");
  c_image->require_subcommand(1);
  std::string image_name, image_source;
  auto* c_import = c_image->add_subcommand("import", "import a root filesystem (tar or directory)");
  c_import->add_option("NAME", image_name)->required();
  c_import->add_option("SOURCE", image_source, "ROOTFS.tar[.gz|.zst] or a directory")->required();
  auto* c_image_ls = c_image->add_subcommand("ls", "list images");

  auto* c_port = app.add_subcommand("port", "preview URLs: expose a sandbox's port through coved's preview listener");
  c_port->require_subcommand(1);
  cove::cli::PortExposeOptions expose;
  auto* c_expose = c_port->add_subcommand("expose", "expose a port (1024-65535) and print its preview URL");
  c_expose->add_option("ID", expose.id)->required();
  c_expose->add_option("PORT", expose.port)->required();
  c_expose->add_option("--name", expose.name, "a name for the exposure");
  c_expose->add_option("--token", expose.token, "the URL's token (1-16 of [a-z0-9_]; default random)");
  std::string port_ls_id;
  auto* c_port_ls = c_port->add_subcommand("ls", "list a sandbox's exposed ports and their URLs");
  c_port_ls->add_option("ID", port_ls_id)->required();
  std::string port_rm_id;
  long long port_rm_port = 0;
  auto* c_port_rm = c_port->add_subcommand("rm", "stop exposing a port (its open connections close)");
  c_port_rm->add_option("ID", port_rm_id)->required();
  c_port_rm->add_option("PORT", port_rm_port)->required();

  // Everything after the first "--" is the command of `cove exec`, passed on
  // verbatim: CLI11 would otherwise rewrite some words (it strips "[...]").
  int cli_argc = argc;
  std::vector<std::string> command;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--") {
      cli_argc = i;
      command.assign(argv + i + 1, argv + argc);
      break;
    }
  }
  if (cli_argc < argc) c_exec->get_option("CMD")->required(false);
  try {
    app.parse(cli_argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code != 0 && c_run->parsed() ? 2 : code;  // cove run: 2 is a usage error
  }
  if (cli_argc < argc) {
    if (!*c_exec) {
      std::fprintf(stderr, "cove: \"--\" is only used by cove exec\n");
      return 1;
    }
    exec.argv.insert(exec.argv.end(), command.begin(), command.end());
  }

  if (url.empty()) url = "http://127.0.0.1:7070";
  if (token.empty()) {
    std::string dir = state_dir.empty() ? "/var/lib/cove" : state_dir;
    auto t = cove::sys::ReadFile(dir + "/api-token", 4096);
    // Unreadable: go on without one; coved's 401 then says what is missing.
    if (t.ok()) token = Trim(*t);
  }

  auto cmds = cove::cli::Commands::Create({url, token, json_out});
  cove::Result<int> rc = 0;
  if (!cmds.ok()) {
    rc = std::move(cmds).error();
  } else {
    auto& c = **cmds;
    if (*c_create) rc = c.CreateSandbox(create);
    else if (*c_ls) rc = c.List();
    else if (*c_info) rc = c.Info(info_id);
    else if (*c_rm) rc = c.Remove(rm_ids);
    else if (*c_exec) rc = c.Exec(exec);
    else if (*c_cp) rc = c.Copy(cp_src, cp_dst);
    else if (*c_shell) rc = c.Shell(shell_id, shell_session);
    else if (*c_run) {
      run.language_set = c_run->count("--lang") > 0;
      rc = c.Run(run);
    }
    else if (*c_import) rc = c.ImageImport(image_name, image_source);
    else if (*c_image_ls) rc = c.ImageList();
    else if (*c_expose) rc = c.PortExpose(expose);
    else if (*c_port_ls) rc = c.PortList(port_ls_id);
    else if (*c_port_rm) rc = c.PortRemove(port_rm_id, port_rm_port);
  }
  if (!rc.ok()) {
    std::string msg = cove::cli::DescribeError(rc.error());
    if (cove::cli::ApiCode(rc.error()) == "UNAUTHORIZED") {
      msg += "; pass --token, set COVE_TOKEN, or make STATE_DIR/api-token readable";
    }
    std::fprintf(stderr, "cove: %s\n", msg.c_str());
    // exec's own failures use 255 (as ssh does), to stay apart from the command's codes.
    return *c_exec ? 255 : *c_run ? 2 : 1;
  }
  std::fflush(stdout);
  return *rc;
}
