package rungroup

// Group is a set of actors run as one; see the package doc. The zero value
// is ready to use. Add and Run must not be called concurrently.
type Group struct {
	actors []actor
}

type actor struct {
	execute   func() error
	interrupt func(error)
}

// Add adds an actor. execute runs it; interrupt, called with the first
// returned actor's error (nil when it returned none), must make execute
// return.
func (g *Group) Add(execute func() error, interrupt func(error)) {
	g.actors = append(g.actors, actor{execute, interrupt})
}

// Run runs every actor, each in a goroutine of its own. When the first
// returns, it interrupts all of them in the order they were added, and
// returns when every one has returned: with the first non-nil error an
// actor returned, nil when none did. A group without actors returns nil at
// once.
func (g *Group) Run() error {
	if len(g.actors) == 0 {
		return nil
	}
	errs := make(chan error, len(g.actors))
	for _, a := range g.actors {
		go func() { errs <- a.execute() }()
	}
	first := <-errs
	for _, a := range g.actors {
		a.interrupt(first)
	}
	err := first
	for range len(g.actors) - 1 {
		if e := <-errs; err == nil {
			err = e
		}
	}
	return err
}
