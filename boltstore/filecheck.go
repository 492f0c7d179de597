package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

// bbolt's on-disk format, as go.etcd.io/bbolt/internal/common defines it
// (page.go, meta.go): a page starts with a 16-byte header (id, flags, count,
// overflow); pages 0 and 1 hold the two meta pages, whose 64-byte meta follows
// the header and ends with an FNV-64a checksum of the 56 bytes before it.
const (
	pageHeaderSize   = 16
	metaSize         = 64
	metaChecksumAt   = 56
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	freelistPageFlag = 0x10
	pgidNoFreelist   = 0xffffffffffffffff
)

// fileMeta is what CheckFile reads of a meta page.
type fileMeta struct {
	pageSize       uint32
	root, freelist uint64
	pgid, txid     uint64 // pgid: the high water mark, one past the last page
}

// CheckFile checks a store file before bbolt maps it: a meta page that
// validates, a file long enough for every page that meta names, and root
// and freelist pages of the right kind. bbolt trusts these and crashes the
// process when they lie (a SIGBUS reading past the end of a truncated file, a
// panic on a garbage freelist). A file that does not exist or is empty
// passes: Open creates it. The error wraps ErrCorrupt and says what is wrong.
// It does not read the B+tree pages: Open recovers a panic while it reads
// them, and every decode of stored bytes returns ErrCorrupt.
func CheckFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("boltstore: check %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("boltstore: check %s: %w", path, err)
	}
	size := st.Size()
	if size == 0 {
		return nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrCorrupt, path, fmt.Sprintf(format, args...))
	}
	m, err := pickMeta(f, size)
	if err != nil {
		return bad("%v", err)
	}
	ps := uint64(m.pageSize)
	if need := m.pgid * ps; m.pgid > uint64(size)/ps || need > uint64(size) {
		return bad("the file is %d bytes but its meta page names %d pages of %d bytes (%d bytes): it was truncated", size, m.pgid, ps, m.pgid*ps)
	}
	if m.root < 2 || m.root >= m.pgid {
		return bad("root page %d outside the file's %d pages", m.root, m.pgid)
	}
	if m.freelist != pgidNoFreelist && (m.freelist < 2 || m.freelist >= m.pgid) {
		return bad("freelist page %d outside the file's %d pages", m.freelist, m.pgid)
	}
	check := func(what string, id uint64, flags ...uint16) error {
		var h [pageHeaderSize]byte
		if _, err := f.ReadAt(h[:], int64(id*ps)); err != nil {
			return bad("read %s page %d: %v", what, id, err)
		}
		gotID := binary.LittleEndian.Uint64(h[0:])
		gotFlags := binary.LittleEndian.Uint16(h[8:])
		overflow := uint64(binary.LittleEndian.Uint32(h[12:]))
		if gotID != id {
			return bad("%s page %d is marked as page %d", what, id, gotID)
		}
		if id+overflow >= m.pgid {
			return bad("%s page %d runs past the end of the file (%d overflow pages)", what, id, overflow)
		}
		for _, fl := range flags {
			if gotFlags == fl {
				return nil
			}
		}
		return bad("%s page %d has page flags %#x", what, id, gotFlags)
	}
	if err := check("root", m.root, branchPageFlag, leafPageFlag); err != nil {
		return err
	}
	if m.freelist != pgidNoFreelist {
		if err := check("freelist", m.freelist, freelistPageFlag); err != nil {
			return err
		}
	}
	return nil
}

// pickMeta reads both meta pages and returns the one bbolt would use: the
// valid one with the higher transaction id. Page 0 tells the page size; when
// it is damaged, page 1 is looked for at the usual page sizes, as bbolt does.
func pickMeta(f io.ReaderAt, size int64) (fileMeta, error) {
	m0, err0 := readMeta(f, 0)
	sizes := []uint32{4096, 8192, 16384, 32768, 65536, uint32(os.Getpagesize())}
	if err0 == nil {
		sizes = []uint32{m0.pageSize}
	}
	var m1 fileMeta
	err1 := errors.New("not found")
	for _, ps := range sizes {
		if int64(ps)+pageHeaderSize+metaSize > size {
			continue
		}
		if m, err := readMeta(f, int64(ps)); err == nil && m.pageSize == ps {
			m1, err1 = m, nil
			break
		} else if err0 == nil {
			err1 = err
		}
	}
	switch {
	case err0 != nil && err1 != nil:
		return fileMeta{}, fmt.Errorf("no valid meta page (page 0: %v; page 1: %v): not a bbolt file, or both meta pages are damaged", err0, err1)
	case err1 != nil:
		return m0, nil
	case err0 != nil:
		return m1, nil
	case m1.txid > m0.txid:
		return m1, nil
	}
	return m0, nil
}

// readMeta reads and validates the meta page at offset off.
func readMeta(f io.ReaderAt, off int64) (fileMeta, error) {
	var b [pageHeaderSize + metaSize]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return fileMeta{}, fmt.Errorf("read at %d: %w", off, err)
	}
	m := b[pageHeaderSize:]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic {
		return fileMeta{}, errors.New("bad magic number")
	}
	if v := le.Uint32(m[4:]); v != boltVersion {
		return fileMeta{}, fmt.Errorf("bbolt format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:metaChecksumAt])
	if h.Sum64() != le.Uint64(m[metaChecksumAt:]) {
		return fileMeta{}, errors.New("checksum mismatch")
	}
	ps := le.Uint32(m[8:])
	if ps < 512 || ps > 1<<20 || ps&(ps-1) != 0 {
		return fileMeta{}, fmt.Errorf("page size %d", ps)
	}
	return fileMeta{
		pageSize: ps,
		root:     le.Uint64(m[16:]),
		freelist: le.Uint64(m[32:]),
		pgid:     le.Uint64(m[40:]),
		txid:     le.Uint64(m[48:]),
	}, nil
}

// recoverCorrupt turns a panic or a memory fault (bbolt reading a page that
// lies) in the calling function into an error wrapping ErrCorrupt. Use it as
// `defer recoverCorrupt(&err, path)()` after debug.SetPanicOnFault is armed
// by it.
func recoverCorrupt(err *error, path string) func() {
	old := debug.SetPanicOnFault(true)
	return func() {
		debug.SetPanicOnFault(old)
		if v := recover(); v != nil {
			*err = fmt.Errorf("%w: %s: reading it failed: %v", ErrCorrupt, path, v)
		}
	}
}

// checkMeta checks the length of every key the store keeps in its meta
// bucket, so that no later read of them can go out of range.
func checkMeta(meta *bolt.Bucket) error {
	for _, k := range []struct {
		key  []byte
		size int
	}{
		{kVersion, 8}, {kCounts, countsLen}, {kStaleWatermark, 16}, {kBrokerMax, 8}, {kReadBack, 8}, {kInFlightMark, 8},
	} {
		if v := meta.Get(k.key); v != nil && len(v) != k.size {
			return fmt.Errorf("%w: meta/%s is %d bytes, want %d", ErrCorrupt, k.key, len(v), k.size)
		}
	}
	return nil
}

// view and update run the store's own transactions: a panic or a
// memory fault while bbolt reads a damaged page becomes an error wrapping
// ErrCorrupt (bbolt rolls a panicking transaction back) instead of a crash.
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(&err, s.db.Path())()
	return s.db.View(fn)
}

func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(&err, s.db.Path())()
	return s.db.Update(fn)
}
