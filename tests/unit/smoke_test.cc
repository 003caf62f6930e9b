#include <gtest/gtest.h>

#include "version.h"

TEST(Version, IsSet) { EXPECT_STREQ(POOLGATE_VERSION, "0.1.0"); }
