// A real ICE agent for the interop test: Debian's libnice (RFC 5245/8445
// ICE, GLib main loop) speaking quiclab's manual-signalling offers
// (p2p/offer.hpp) on stdin/stdout, so it can stand in for the other
// `quiclab peer --signal stdio --checks-only`.
//
//   nice_peer [--controlling] --host ADDR [--host ADDR]... [--stun ADDR:PORT] [--timeout-s N] [--ta-ms N]
//
// --ta-ms sets libnice's pacing timer (stun-pacing-timer, libnice's default
// 20 ms; RFC 8445's and quiclab's Ta is 50 ms): bench/p2p compares at equal Ta.
//
// stdout, one JSON object per line: first the offer (once gathering is done),
// then {"event":"state",...} per component state change,
// {"event":"selected","local":{...},"remote":{...}} for the nominated pair,
// and last {"event":"result","outcome":"connected"|"failed","reason":...}.
// stdin: the other side's offer, one line. Exit 0 when the component reached
// READY with a selected pair, 1 otherwise.
#include <agent.h>
#include <glib.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace {

struct State {
  GMainLoop* loop = nullptr;
  NiceAgent* agent = nullptr;
  guint stream = 0;
  bool controlling = false;
  bool offered = false;
  bool remote_set = false;
  bool ready = false;
  bool selected = false;
  std::string input;
  std::string failure;
  nlohmann::json selected_pair;
};

// Every line carries wall_ms (the wall clock, as quiclab peer's lines do) so
// that bench/p2p can time libnice the way it times quiclab.
void emit(nlohmann::json j) {
  j["wall_ms"] = static_cast<double>(g_get_real_time()) / 1000.0;
  std::cout << j.dump() << std::endl;
}

const char* type_name(NiceCandidateType t) {
  switch (t) {
    case NICE_CANDIDATE_TYPE_HOST:
      return "host";
    case NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE:
      return "srflx";
    case NICE_CANDIDATE_TYPE_PEER_REFLEXIVE:
      return "prflx";
    case NICE_CANDIDATE_TYPE_RELAYED:
      return "relay";
  }
  return "host";
}

std::string address_text(const NiceAddress& a) {
  char ip[NICE_ADDRESS_STRING_LEN];
  nice_address_to_string(&a, ip);
  const bool v6 = std::strchr(ip, ':') != nullptr;
  return (v6 ? "[" + std::string(ip) + "]" : std::string(ip)) + ":" + std::to_string(nice_address_get_port(&a));
}

nlohmann::json candidate_json(const NiceCandidate* c) {
  return {{"type", type_name(c->type)}, {"address", address_text(c->addr)}, {"priority", c->priority}};
}

void finish(State* s, const std::string& failure) {
  if (!failure.empty() && s->failure.empty()) s->failure = failure;
  g_main_loop_quit(s->loop);
}

void on_gathering_done(NiceAgent* agent, guint stream, gpointer data) {
  auto* s = static_cast<State*>(data);
  if (s->offered) return;
  s->offered = true;
  gchar *ufrag = nullptr, *pwd = nullptr;
  nice_agent_get_local_credentials(agent, stream, &ufrag, &pwd);
  nlohmann::json offer;
  offer["v"] = 1;
  offer["name"] = "libnice";
  offer["role"] = s->controlling ? "controlling" : "controlled";
  offer["ufrag"] = ufrag;
  offer["password"] = pwd;
  // libnice keeps its tie-breaker to itself; the offer needs one (quiclab's
  // agent takes the peer's from its checks, not from here).
  std::random_device rd;
  char tb[17];
  std::snprintf(tb, sizeof tb, "%08x%08x", rd(), rd());
  offer["tie_breaker"] = tb;
  // No QUIC on this side: a fingerprint nobody pins (quiclab runs --checks-only).
  std::string fp;
  for (int i = 0; i < 32; ++i) fp += (i ? ":" : "") + std::string("00");
  offer["fingerprint"] = fp;
  offer["candidates"] = nlohmann::json::array();
  GSList* cands = nice_agent_get_local_candidates(agent, stream, 1);
  for (GSList* i = cands; i; i = i->next) {
    auto* c = static_cast<NiceCandidate*>(i->data);
    if (c->transport == NICE_CANDIDATE_TRANSPORT_UDP) offer["candidates"].push_back(candidate_json(c));
  }
  g_slist_free_full(cands, reinterpret_cast<GDestroyNotify>(&nice_candidate_free));
  g_free(ufrag);
  g_free(pwd);
  emit(offer);
}

bool set_remote(State* s, const std::string& line) {
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("ufrag") || !j.contains("password") ||
      !j.contains("candidates")) {
    finish(s, "the other side's offer is not an offer");
    return false;
  }
  const std::string ufrag = j["ufrag"], pwd = j["password"];
  nice_agent_set_remote_credentials(s->agent, s->stream, ufrag.c_str(), pwd.c_str());
  GSList* list = nullptr;
  int n = 0;
  for (const auto& c : j["candidates"]) {
    std::string type = c.value("type", "host"), address = c.value("address", "");
    auto colon = address.rfind(':');
    if (colon == std::string::npos) continue;
    std::string ip = address.substr(0, colon);
    if (!ip.empty() && ip.front() == '[') ip = ip.substr(1, ip.size() - 2);
    NiceCandidateType t = type == "srflx"   ? NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE
                          : type == "prflx" ? NICE_CANDIDATE_TYPE_PEER_REFLEXIVE
                          : type == "relay" ? NICE_CANDIDATE_TYPE_RELAYED
                                            : NICE_CANDIDATE_TYPE_HOST;
    NiceCandidate* nc = nice_candidate_new(t);
    nc->stream_id = s->stream;
    nc->component_id = 1;
    nc->transport = NICE_CANDIDATE_TRANSPORT_UDP;
    nc->priority = c.value("priority", 0u);
    std::snprintf(nc->foundation, sizeof nc->foundation, "q%d", ++n);
    if (!nice_address_set_from_string(&nc->addr, ip.c_str())) {
      nice_candidate_free(nc);
      continue;
    }
    nice_address_set_port(&nc->addr, static_cast<guint>(std::stoul(address.substr(colon + 1))));
    list = g_slist_append(list, nc);
  }
  int added = nice_agent_set_remote_candidates(s->agent, s->stream, 1, list);
  g_slist_free_full(list, reinterpret_cast<GDestroyNotify>(&nice_candidate_free));
  emit({{"event", "remote_set"}, {"candidates", added}});
  s->remote_set = true;
  return true;
}

gboolean on_stdin(GIOChannel* ch, GIOCondition, gpointer data) {
  auto* s = static_cast<State*>(data);
  gchar* line = nullptr;
  gsize len = 0;
  GIOStatus st = g_io_channel_read_line(ch, &line, &len, nullptr, nullptr);
  if (st == G_IO_STATUS_NORMAL && line) {
    std::string text(line, len);
    g_free(line);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    if (!text.empty() && !s->remote_set) set_remote(s, text);
    return s->remote_set ? FALSE : TRUE;
  }
  g_free(line);
  if (st == G_IO_STATUS_EOF && !s->remote_set) finish(s, "standard input ended before the other side's offer");
  return st == G_IO_STATUS_AGAIN ? TRUE : FALSE;
}

gboolean quit_later(gpointer data) {
  finish(static_cast<State*>(data), "");
  return FALSE;
}

void on_state(NiceAgent*, guint, guint, guint state, gpointer data) {
  auto* s = static_cast<State*>(data);
  emit({{"event", "state"}, {"state", nice_component_state_to_string(static_cast<NiceComponentState>(state))}});
  if (state == NICE_COMPONENT_STATE_READY && !s->ready) {
    s->ready = true;
    // Stay a moment: the other side may still be finishing its checks.
    g_timeout_add(1500, quit_later, s);
  } else if (state == NICE_COMPONENT_STATE_FAILED) {
    finish(s, "component failed");
  }
}

void on_selected(NiceAgent*, guint, guint, NiceCandidate* local, NiceCandidate* remote, gpointer data) {
  auto* s = static_cast<State*>(data);
  s->selected = true;
  s->selected_pair = {{"local", candidate_json(local)}, {"remote", candidate_json(remote)}};
  emit({{"event", "selected"}, {"local", candidate_json(local)}, {"remote", candidate_json(remote)}});
}

void on_recv(NiceAgent*, guint, guint, guint, gchar*, gpointer) {}

gboolean on_timeout(gpointer data) {
  finish(static_cast<State*>(data), "timeout");
  return FALSE;
}

}  // namespace

int main(int argc, char** argv) {
  State s;
  std::vector<std::string> hosts;
  std::string stun;
  unsigned timeout_s = 20;
  unsigned ta_ms = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "nice_peer: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--controlling")
      s.controlling = true;
    else if (a == "--host")
      hosts.push_back(next());
    else if (a == "--stun")
      stun = next();
    else if (a == "--timeout-s")
      timeout_s = static_cast<unsigned>(std::stoul(next()));
    else if (a == "--ta-ms")
      ta_ms = static_cast<unsigned>(std::stoul(next()));
    else {
      std::cerr << "usage: nice_peer [--controlling] --host ADDR... [--stun ADDR:PORT] [--timeout-s N] [--ta-ms N]\n";
      return 2;
    }
  }
  s.loop = g_main_loop_new(nullptr, FALSE);
  s.agent = nice_agent_new(g_main_loop_get_context(s.loop), NICE_COMPATIBILITY_RFC5245);
  g_object_set(s.agent, "controlling-mode", s.controlling ? TRUE : FALSE, "ice-tcp", FALSE, "upnp", FALSE, nullptr);
  if (ta_ms) g_object_set(s.agent, "stun-pacing-timer", ta_ms, nullptr);
  if (!stun.empty()) {
    auto colon = stun.rfind(':');
    g_object_set(s.agent, "stun-server", stun.substr(0, colon).c_str(), "stun-server-port",
                 static_cast<guint>(std::stoul(stun.substr(colon + 1))), nullptr);
  }
  for (const auto& h : hosts) {
    NiceAddress addr;
    nice_address_init(&addr);
    if (!nice_address_set_from_string(&addr, h.c_str())) {
      std::cerr << "nice_peer: bad address " << h << "\n";
      return 2;
    }
    nice_agent_add_local_address(s.agent, &addr);
  }
  g_signal_connect(s.agent, "candidate-gathering-done", G_CALLBACK(on_gathering_done), &s);
  g_signal_connect(s.agent, "component-state-changed", G_CALLBACK(on_state), &s);
  g_signal_connect(s.agent, "new-selected-pair-full", G_CALLBACK(on_selected), &s);
  s.stream = nice_agent_add_stream(s.agent, 1);
  nice_agent_attach_recv(s.agent, s.stream, 1, g_main_loop_get_context(s.loop), on_recv, &s);
  if (!nice_agent_gather_candidates(s.agent, s.stream)) {
    std::cerr << "nice_peer: gathering failed\n";
    return 1;
  }
  GIOChannel* in = g_io_channel_unix_new(0);
  g_io_add_watch(in, static_cast<GIOCondition>(G_IO_IN | G_IO_HUP), on_stdin, &s);
  g_timeout_add_seconds(timeout_s, on_timeout, &s);
  g_main_loop_run(s.loop);
  const bool ok = s.ready && s.selected && s.failure.empty();
  nlohmann::json r{{"event", "result"}, {"outcome", ok ? "connected" : "failed"}, {"reason", s.failure}};
  if (s.selected) r["pair"] = s.selected_pair;
  emit(r);
  g_io_channel_unref(in);
  g_object_unref(s.agent);
  g_main_loop_unref(s.loop);
  return ok ? 0 : 1;
}
