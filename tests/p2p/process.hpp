// Test helper: runs the real quiclab binary as a child process with stdout and
// stderr in temp files, and always kills it (SIGTERM, then SIGKILL) on scope exit.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/sanitizer_report.hpp"

namespace quiclab::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ChildProcess {
 public:
  explicit ChildProcess(std::vector<std::string> argv) {
    char dir_template[] = "/tmp/quiclab-p2p-XXXXXX";
    dir_ = mkdtemp(dir_template);
    out_ = dir_ + "/stdout";
    err_ = dir_ + "/stderr";
    pid_ = fork();
    if (pid_ == 0) {
      int o = open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int e = open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(o, 1);
      dup2(e, 2);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~ChildProcess() {
    stop();
    if (auto report = sanitizer_report(stderr_text() + stdout_text())) {
#ifdef CATCH_VERSION_MAJOR
      FAIL_CHECK("child process printed a sanitizer report:\n" << *report);
#else
      std::fprintf(stderr, "child process printed a sanitizer report:\n%s\n", report->c_str());
#endif
    }
    std::remove(out_.c_str());
    std::remove(err_.c_str());
    rmdir(dir_.c_str());
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  /// Waits (up to `seconds`) until stdout contains `text`.
  bool wait_for_stdout(const std::string& text, int seconds = 30) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < until) {
      if (stdout_text().find(text) != std::string::npos) return true;
      if (!alive()) return stdout_text().find(text) != std::string::npos;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  bool alive() {
    if (pid_ <= 0 || exited_) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      status_ = status;
      return false;
    }
    return true;
  }
  void signal(int sig) {
    if (alive()) kill(pid_, sig);
  }
  /// SIGTERM, up to 10 s grace, then SIGKILL. Returns the wait status.
  int stop() {
    if (pid_ <= 0) return -1;
    if (alive()) {
      kill(pid_, SIGTERM);
      for (int i = 0; i < 500 && alive(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (alive()) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status_, 0);
        exited_ = true;
      }
    }
    return status_;
  }
  pid_t pid() const { return pid_; }
  std::string stdout_text() const { return read_file(out_); }
  std::string stderr_text() const { return read_file(err_); }

 private:
  std::string dir_, out_, err_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = -1;
};

}  // namespace quiclab::test
