#include "common/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdexcept>

namespace agentperf {

namespace {
std::string openssl_errors() {
  std::string out;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}
}  // namespace

TlsContext::TlsContext(const TlsOptions& options) : options_(options) {
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ctx_) throw std::runtime_error("TLS: cannot create a context: " + openssl_errors());
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (options_.verify) {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    int ok = options_.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx_)
                                      : SSL_CTX_load_verify_locations(ctx_, options_.ca_file.c_str(), nullptr);
    if (ok != 1) {
      std::string why = openssl_errors();
      SSL_CTX_free(ctx_);
      throw std::runtime_error("TLS: cannot load CA certificates" +
                               (options_.ca_file.empty() ? std::string() : " from " + options_.ca_file) + ": " + why);
    }
  } else {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  }
  for (const std::string& p : options_.alpn) {
    alpn_wire_.push_back(static_cast<unsigned char>(p.size()));
    alpn_wire_.insert(alpn_wire_.end(), p.begin(), p.end());
  }
  if (!alpn_wire_.empty()) SSL_CTX_set_alpn_protos(ctx_, alpn_wire_.data(), static_cast<unsigned>(alpn_wire_.size()));
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

TlsConnection::TlsConnection(const TlsContext& context) {
  ssl_ = SSL_new(context.native());
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in_, -1);  // an empty input BIO means "no data yet", not EOF
  SSL_set_bio(ssl_, in_, out_);     // the SSL object owns both BIOs now
  SSL_set_connect_state(ssl_);
  const TlsOptions& o = context.options();
  if (!o.server_name.empty()) {
    SSL_set_tlsext_host_name(ssl_, o.server_name.c_str());
    if (o.verify) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      // An IP literal is checked against the certificate's IP addresses, a name against its DNS names.
      if (X509_VERIFY_PARAM_set1_ip_asc(param, o.server_name.c_str()) != 1) {
        ERR_clear_error();
        X509_VERIFY_PARAM_set1_host(param, o.server_name.c_str(), 0);
      }
    }
  }
}

TlsConnection::~TlsConnection() { SSL_free(ssl_); }

void TlsConnection::set_error(const char* where, int ssl_result) {
  int code = SSL_get_error(ssl_, ssl_result);
  long verify = SSL_get_verify_result(ssl_);
  error_ = std::string("TLS ") + where + ": ";
  if (verify != X509_V_OK) {
    error_ += std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify) +
              " (use --ca FILE to trust its issuer, or --insecure for a self-signed test setup)";
  } else {
    error_ += "error " + std::to_string(code) + ": " + openssl_errors();
  }
  ERR_clear_error();
}

bool TlsConnection::handshake() {
  if (done_) return true;
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    done_ = true;
    const unsigned char* proto = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl_, &proto, &len);
    alpn_.assign(reinterpret_cast<const char*>(proto), len);
    return true;
  }
  int code = SSL_get_error(ssl_, r);
  if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) return true;
  set_error("handshake", r);
  return false;
}

void TlsConnection::feed_cipher(const char* data, size_t n) { BIO_write(in_, data, static_cast<int>(n)); }

long TlsConnection::read_plain(char* buf, size_t cap) {
  int r = SSL_read(ssl_, buf, static_cast<int>(cap));
  if (r > 0) return r;
  int code = SSL_get_error(ssl_, r);
  if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) return 0;
  if (code == SSL_ERROR_ZERO_RETURN) return -2;
  set_error("read", r);
  return -1;
}

bool TlsConnection::write_plain(const char* data, size_t n) {
  while (n > 0) {
    int r = SSL_write(ssl_, data, static_cast<int>(n));
    if (r <= 0) {
      set_error("write", r);
      return false;
    }
    data += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

size_t TlsConnection::pending_cipher(const char** data) {
  // Move what OpenSSL produced into our buffer, then expose the unconsumed part.
  char tmp[16384];
  int r;
  while ((r = BIO_read(out_, tmp, sizeof tmp)) > 0) out_buf_.insert(out_buf_.end(), tmp, tmp + r);
  *data = out_buf_.data() + out_off_;
  return out_buf_.size() - out_off_;
}

void TlsConnection::consume_cipher(size_t n) {
  out_off_ += n;
  if (out_off_ >= out_buf_.size()) {
    out_buf_.clear();
    out_off_ = 0;
  } else if (out_off_ > (1u << 20)) {
    out_buf_.erase(out_buf_.begin(), out_buf_.begin() + static_cast<ptrdiff_t>(out_off_));
    out_off_ = 0;
  }
}

}  // namespace agentperf
