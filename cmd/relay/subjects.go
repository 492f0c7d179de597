package main

import "strings"

// covers reports whether some stream subject filter in filters matches every
// subject that want matches (want may hold wildcards: "outbox.>").
func covers(filters []string, want string) bool {
	for _, f := range filters {
		if subsetOf(want, f) {
			return true
		}
	}
	return false
}

// subsetOf reports whether every subject matched by sub is matched by super,
// both NATS subject filters ("*" one token, ">" one or more at the end).
func subsetOf(sub, super string) bool {
	a, b := strings.Split(sub, "."), strings.Split(super, ".")
	for i, bt := range b {
		if bt == ">" {
			return i < len(a) // ">" needs at least one token
		}
		if i >= len(a) {
			return false
		}
		switch at := a[i]; {
		case at == ">":
			return false // sub matches deeper subjects super's token cannot
		case bt == "*":
		case at == "*" || at != bt:
			return false
		}
	}
	return len(a) == len(b)
}
