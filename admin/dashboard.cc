// / (the dashboard page) and its Content-Security-Policy (admin_render.h).
#include <openssl/evp.h>

#include <string>
#include <string_view>

#include "admin/admin_render.h"
#include "admin/dashboard_page.h"
#include "admin/text.h"

namespace poolgate {

namespace {

// The text between `open` and the next `close` in `page`, or "" when absent.
std::string_view between(std::string_view page, std::string_view open, std::string_view close) {
  const size_t begin = page.find(open);
  if (begin == std::string_view::npos) return {};
  const size_t start = begin + open.size();
  const size_t end = page.find(close, start);
  return end == std::string_view::npos ? std::string_view() : page.substr(start, end - start);
}

// "'sha256-BASE64'", the CSP source expression of an inline element's text.
std::string hashSource(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  unsigned char encoded[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(encoded, digest, static_cast<int>(length));
  return "'sha256-" + std::string(reinterpret_cast<const char*>(encoded), static_cast<size_t>(n)) + "'";
}

}  // namespace

std::string dashboardContentSecurityPolicy() {
  const std::string_view page = kDashboardBody;
  return "default-src 'none'; script-src " + hashSource(between(page, "<script>", "</script>")) +
         "; style-src " + hashSource(between(page, "<style>", "</style>")) +
         "; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

void renderDashboard(const RenderContext& ctx, std::string& out) {
  out.reserve(out.size() + kDashboardHead.size() + kDashboardBody.size() + ctx.version.size() + 16);
  out.append(kDashboardHead);
  render::appendHtmlText(out, ctx.version);
  out.append(kDashboardBody);
}

}  // namespace poolgate
