#pragma once

namespace poolgate {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

}  // namespace poolgate
