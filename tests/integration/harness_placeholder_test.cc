#include <gtest/gtest.h>
#include <unistd.h>

TEST(Binary, Exists) { EXPECT_EQ(access(POOLGATE_BINARY, X_OK), 0); }
