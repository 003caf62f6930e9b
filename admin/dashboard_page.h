// The admin dashboard page (admin/dashboard.html, where its notes are),
// compiled in at build time by admin/embed_dashboard.cmake: the text before
// and after the version placeholder in its <title>.
#pragma once

#include <string_view>

namespace poolgate {

extern const std::string_view kDashboardHead;
extern const std::string_view kDashboardBody;

}  // namespace poolgate
