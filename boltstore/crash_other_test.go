//go:build !unix

package boltstore_test

import "os"

// crashChildEnv names the store file of the crash test's child process,
// which needs SIGKILL: the test runs on unix only.
const crashChildEnv = "BOLTSTORE_CRASH_CHILD"

func crashChild(string) int {
	os.Stderr.WriteString("the crash test runs on unix only\n")
	return 2
}
