// TLS for the client, sans-IO: OpenSSL over memory BIOs, between the socket and the Session.
//
// The connection feeds ciphertext it reads (feed_cipher), reads plaintext out (read_plain), hands
// plaintext to send (write_plain) and writes whatever ciphertext is pending (pending_cipher /
// consume_cipher). ALPN offers h2 and/or http/1.1; certificate verification is on by default (the
// system trust store, or a CA file), with SNI and host-name checking.
//
// Thread safety: a TlsContext may be shared by threads once built (OpenSSL's SSL_CTX is
// thread-safe for creating connections). A TlsConnection belongs to one worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace agentperf {

struct TlsOptions {
  bool verify = true;            ///< verify the server certificate and host name
  std::string ca_file;           ///< PEM file of trusted CAs; empty: the system store
  std::string server_name;       ///< SNI and the name to verify; empty: none sent / checked
  std::vector<std::string> alpn; ///< protocols to offer, in preference order ("h2", "http/1.1")
};

class TlsContext {
 public:
  /// Throws std::runtime_error with OpenSSL's reason when the context or CA file cannot be loaded.
  explicit TlsContext(const TlsOptions& options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  const TlsOptions& options() const { return options_; }
  SSL_CTX* native() const { return ctx_; }

 private:
  TlsOptions options_;
  SSL_CTX* ctx_ = nullptr;
  std::vector<unsigned char> alpn_wire_;
};

class TlsConnection {
 public:
  explicit TlsConnection(const TlsContext& context);
  ~TlsConnection();
  TlsConnection(const TlsConnection&) = delete;
  TlsConnection& operator=(const TlsConnection&) = delete;

  /// Starts (or continues) the handshake; call after connect and after each feed_cipher until
  /// handshake_done(). Returns false on a fatal handshake error (see error()).
  bool handshake();
  bool handshake_done() const { return done_; }
  /// The protocol ALPN selected ("h2", "http/1.1"), empty when none was negotiated.
  const std::string& alpn() const { return alpn_; }

  /// Ciphertext read from the socket.
  void feed_cipher(const char* data, size_t n);
  /// Decrypts into `buf`; returns bytes (0: need more ciphertext), or -1 on a fatal error, -2 when
  /// the peer sent close_notify.
  long read_plain(char* buf, size_t cap);
  /// Encrypts `n` bytes; returns false on a fatal error.
  bool write_plain(const char* data, size_t n);
  /// Ciphertext waiting to be written to the socket (pointer valid until consume_cipher()).
  size_t pending_cipher(const char** data);
  void consume_cipher(size_t n);

  /// The last error, in words (certificate verification failures say why).
  const std::string& error() const { return error_; }

 private:
  void set_error(const char* where, int ssl_result);
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;   // ciphertext from the network (we write, OpenSSL reads)
  BIO* out_ = nullptr;  // ciphertext to the network (OpenSSL writes, we read)
  std::vector<char> out_buf_;
  size_t out_off_ = 0;
  bool done_ = false;
  std::string alpn_;
  std::string error_;
};

}  // namespace agentperf
