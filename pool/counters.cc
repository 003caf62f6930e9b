#include "pool/counters.h"

namespace poolgate {

const char* toString(NoReuse reason) {
  switch (reason) {
    case NoReuse::kReusable: return "reusable";
    case NoReuse::kResponseNotDone: return "response_not_done";
    case NoReuse::kUpstreamClose: return "upstream_close";
    case NoReuse::kRequestNotSent: return "request_not_sent";
    case NoReuse::kError: return "error";
    case NoReuse::kMaxRequests: return "max_requests";
    case NoReuse::kMaxLifetime: return "max_lifetime";
    case NoReuse::kExiting: return "exiting";
    case NoReuse::kUnreadBytes: return "unread_bytes";
    case NoReuse::kPoolFull: return "pool_full";
    case NoReuse::kYielded: return "yielded";
    case NoReuse::kClientGone: return "client_gone";
    case NoReuse::kRetired: return "retired";
    case NoReuse::kUpstreamMax: return "upstream_max";
    case NoReuse::kCount: break;
  }
  return "unknown";
}

}  // namespace poolgate
