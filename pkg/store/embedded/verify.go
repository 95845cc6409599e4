package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
)

// bbolt's file format (version 2), as its internal/common package lays it
// out: every page starts with a 16-byte header (id, flags, count,
// overflow); the meta pages 0 and 1 hold a 64-byte meta after it; branch
// and leaf pages an array of 16-byte elements whose key and value offsets
// are relative to the element itself. Nested buckets are leaf values with
// a 16-byte header (root page, sequence), root 0 meaning the bucket's page
// follows inline.
const (
	boltMagic     = 0xED0CDAED
	boltVersion   = 2
	headerSize    = 16
	elementSize   = 16
	bucketHeader  = 16
	metaSize      = 64
	branchFlag    = 0x01
	leafFlag      = 0x02
	freelistFlag  = 0x10
	bucketLeaf    = 0x01
	noFreelist    = 0xFFFFFFFFFFFFFFFF
	maxPageCount  = 0xFFFF
	maxPageSize64 = 64 << 10
)

// boltMeta is the part of a meta page the walk needs.
type boltMeta struct {
	pageSize           uint32
	root, freelist, hw uint64 // hw: the high-water mark, pages in use
	txid               uint64
}

// verifyPages walks the database file's page tree with plain reads, before
// bbolt maps it, as bbolt itself would from its newest valid meta page, and
// reports what would make bbolt fault, panic or loop instead of failing:
// a page id past the high-water mark or the end of the file, a page that
// is not what its parent says, one reached twice (a cycle), an element
// outside its page. It holds the file's lock meanwhile (errLocked if
// another process has it). A missing file is no damage: bbolt creates it.
func verifyPages(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	release, err := holdLock(f)
	if err != nil {
		return "", err
	}
	defer release()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	if info.Size() == 0 {
		return "", nil // bbolt initializes an empty file
	}
	w := walker{f: f, size: info.Size(), seen: map[uint64]bool{}}
	m, problem := w.meta()
	if problem != "" {
		return problem, nil
	}
	w.m = m
	if problem := w.page(m.root, 0, leafFlag|branchFlag); problem != "" {
		return problem, nil
	}
	if m.freelist != noFreelist {
		return w.freelist(m.freelist), nil
	}
	return "", nil
}

type walker struct {
	f    io.ReaderAt
	size int64
	m    boltMeta
	seen map[uint64]bool
	// bufs holds one page buffer per depth of the walk, reused: a page's
	// buffer is needed only until its subtree is walked.
	bufs [][]byte
}

// buffer is the page buffer of depth d, at least n bytes.
func (w *walker) buffer(d, n int) []byte {
	for len(w.bufs) <= d {
		w.bufs = append(w.bufs, nil)
	}
	if cap(w.bufs[d]) < n {
		w.bufs[d] = make([]byte, n)
	}
	return w.bufs[d][:n]
}

// meta picks the meta page bbolt would: the valid one with the higher
// transaction id.
func (w *walker) meta() (boltMeta, string) {
	var best boltMeta
	found := false
	pageSize := int64(os.Getpagesize())
	for i := range int64(2) {
		buf := make([]byte, headerSize+metaSize)
		if _, err := w.f.ReadAt(buf, i*pageSize); err != nil {
			continue
		}
		m, ok := decodeMeta(buf[headerSize:])
		if !ok {
			continue
		}
		if i == 0 {
			pageSize = int64(m.pageSize) // page 1 is where page 0 says
		}
		if !found || m.txid > best.txid {
			best, found = m, true
		}
	}
	if !found {
		return boltMeta{}, "no valid meta page"
	}
	if best.pageSize < 512 || best.pageSize > maxPageSize64 || best.pageSize&(best.pageSize-1) != 0 {
		return boltMeta{}, fmt.Sprintf("meta page: page size %d", best.pageSize)
	}
	return best, ""
}

func decodeMeta(b []byte) (boltMeta, bool) {
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != boltMagic || le.Uint32(b[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(b[:56])
	if h.Sum64() != le.Uint64(b[56:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(b[8:]), root: le.Uint64(b[16:]), freelist: le.Uint64(b[32:]),
		hw: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}, true
}

// read reads page id (with its overflow pages) into the buffer of depth
// d, once: a page reached again is a cycle, or a page shared by two
// parents.
func (w *walker) read(id uint64, d int) ([]byte, string) {
	ps := int64(w.m.pageSize)
	if id < 2 || id >= w.m.hw || int64(id+1)*ps > w.size {
		return nil, fmt.Sprintf("page %d: outside the file (%d pages in use, %d bytes)", id, w.m.hw, w.size)
	}
	if w.seen[id] {
		return nil, fmt.Sprintf("page %d: reached twice", id)
	}
	w.seen[id] = true
	buf := w.buffer(d, int(ps))
	if _, err := w.f.ReadAt(buf, int64(id)*ps); err != nil {
		return nil, fmt.Sprintf("page %d: %v", id, err)
	}
	if got := binary.LittleEndian.Uint64(buf); got != id {
		return nil, fmt.Sprintf("page %d: says it is page %d", id, got)
	}
	overflow := uint64(binary.LittleEndian.Uint32(buf[12:]))
	if overflow == 0 {
		return buf, ""
	}
	if id+overflow >= w.m.hw || int64(id+overflow+1)*ps > w.size {
		return nil, fmt.Sprintf("page %d: %d overflow pages run outside the file", id, overflow)
	}
	buf = w.buffer(d, int(int64(overflow+1)*ps))
	if _, err := w.f.ReadAt(buf, int64(id)*ps); err != nil {
		return nil, fmt.Sprintf("page %d: %v", id, err)
	}
	return buf, ""
}

// page checks a branch or leaf page of a bucket, at depth d, and
// everything below it.
func (w *walker) page(id uint64, d int, want uint16) string {
	buf, problem := w.read(id, d)
	if problem != "" {
		return problem
	}
	return w.tree(id, d, buf, want)
}

// tree checks the page in buf (a page of the file, or a bucket's inline
// page) at depth d, and the pages below it.
func (w *walker) tree(id uint64, d int, buf []byte, want uint16) string {
	le := binary.LittleEndian
	flags, count := le.Uint16(buf[8:]), int(le.Uint16(buf[10:]))
	if flags&want == 0 || (flags != branchFlag && flags != leafFlag) {
		return fmt.Sprintf("page %d: type %#x where a bucket's page belongs", id, flags)
	}
	if headerSize+count*elementSize > len(buf) {
		return fmt.Sprintf("page %d: %d elements do not fit it", id, count)
	}
	for i := range count {
		at := headerSize + i*elementSize
		e := buf[at : at+elementSize]
		if flags == branchFlag {
			pos, ksize := int(le.Uint32(e[0:])), int(le.Uint32(e[4:]))
			if at+pos+ksize > len(buf) {
				return fmt.Sprintf("page %d: element %d outside the page", id, i)
			}
			if problem := w.page(le.Uint64(e[8:]), d+1, leafFlag|branchFlag); problem != "" {
				return problem
			}
			continue
		}
		eflags, pos, ksize, vsize := le.Uint32(e[0:]), int(le.Uint32(e[4:])), int(le.Uint32(e[8:])), int(le.Uint32(e[12:]))
		if at+pos+ksize+vsize > len(buf) {
			return fmt.Sprintf("page %d: element %d outside the page", id, i)
		}
		if eflags&bucketLeaf == 0 {
			continue
		}
		v := buf[at+pos+ksize : at+pos+ksize+vsize]
		if len(v) < bucketHeader {
			return fmt.Sprintf("page %d: bucket %q has no header", id, buf[at+pos:at+pos+ksize])
		}
		if root := le.Uint64(v); root != 0 {
			if problem := w.page(root, d+1, leafFlag|branchFlag); problem != "" {
				return problem
			}
		} else if len(v) < bucketHeader+headerSize {
			return fmt.Sprintf("page %d: inline bucket %q is cut short", id, buf[at+pos:at+pos+ksize])
		} else if problem := w.tree(id, d+1, v[bucketHeader:], leafFlag); problem != "" {
			return problem
		}
	}
	return ""
}

// freelist checks the freelist page and the page ids it lists.
func (w *walker) freelist(id uint64) string {
	buf, problem := w.read(id, 0)
	if problem != "" {
		return problem
	}
	le := binary.LittleEndian
	if le.Uint16(buf[8:]) != freelistFlag {
		return fmt.Sprintf("page %d: not the freelist", id)
	}
	count, ids := int(le.Uint16(buf[10:])), buf[headerSize:]
	if count == maxPageCount {
		if len(ids) < 8 {
			return fmt.Sprintf("page %d: freelist cut short", id)
		}
		count, ids = int(le.Uint64(ids)), ids[8:]
	}
	if count < 0 || count*8 > len(ids) {
		return fmt.Sprintf("page %d: %d free pages do not fit the freelist", id, count)
	}
	for i := range count {
		if free := le.Uint64(ids[i*8:]); free < 2 || free >= w.m.hw {
			return fmt.Sprintf("page %d: frees page %d, outside the file", id, free)
		}
	}
	return ""
}
