// ConnectionRegistry: the open connections of one listener (or of a group of
// listeners sharing caps), each counted under a key (the client's address, or
// the sandbox behind it) and marked idle or busy, so that room can be made
// by closing the connection that has been idle longest: when a new one would
// go over a cap, and when the process is out of file descriptors.
//
// Idle means waiting for (or still reading) a request head: closing such a
// connection loses no work, the client opens another. A connection is idle
// from its admission until it says otherwise.
//
// Each admitted connection holds a Slot (RAII: destroying it uncounts the
// connection). Slots share the registry's state, so they may outlive it.
// Thread-safe (one mutex): a connection is admitted on the thread that
// accepts it and served on another (io/shards.h), and a new connection on
// any thread may shed one of another thread. So a closer may run on any
// thread: the front ends' closers shut the socket down (shutdown(2)) and
// the connection, on its own thread, notices and closes it, uncounted first
// so that a shed never hits a reused descriptor.
#pragma once

#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "io/connection_limits.h"

namespace cove::io {

class ConnectionRegistry {
  struct Entry;
  struct State;

 public:
  class Slot {
   public:
    Slot(Slot&&) noexcept;
    Slot& operator=(Slot&&) noexcept;
    ~Slot();

    // Waiting for the next request head: the registry may shed it.
    void Idle();
    // Serving a request (or a tunnel): never shed.
    void Busy();
    // Replaces the function that closes the connection (see Admit).
    void SetCloser(std::function<void()> close);
    // The registry closed it to make room (it no longer counts).
    bool shed() const;

   private:
    friend class ConnectionRegistry;
    Slot(std::shared_ptr<State> state, std::unique_ptr<Entry> entry);
    std::shared_ptr<State> state_;
    std::unique_ptr<Entry> entry_;
  };

  explicit ConnectionRegistry(ConnectionLimits limits);
  ~ConnectionRegistry();

  // Counts a new, idle connection under `key`. Over max_per_key the key's own
  // longest-idle connection is shed first, then, over max_connections, the
  // registry's longest-idle one; nullopt when a cap is reached and nothing
  // idle can make room (refuse the connection). `close` must close the
  // connection's socket(s) at once (freeing the descriptors) and must not
  // destroy the slot; the registry calls it at most once, only while idle.
  std::optional<Slot> Admit(const std::string& key, std::function<void()> close);

  // Closes the longest-idle connection; false when none is idle.
  bool ShedOldestIdle();

  size_t size() const;                        // connections counted
  size_t idle() const;                        // of which idle
  size_t count(const std::string& key) const;  // under `key`
  const ConnectionLimits& limits() const;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace cove::io
