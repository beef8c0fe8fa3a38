package journal

import "fmt"

// Op is a record's operation. The numeric values are wire format: never
// renumber, only append.
type Op uint8

const (
	OpWrite     Op = 1  // Path, Offset, Data
	OpTruncate  Op = 2  // Path, Length (new size)
	OpFallocate Op = 3  // Path, Mode (FALLOC_FL_*), Offset, Length
	OpCreate    Op = 4  // Path, Mode (permission bits); opens with O_CREAT, never truncates
	OpMkdir     Op = 5  // Path, Mode
	OpRmdir     Op = 6  // Path
	OpUnlink    Op = 7  // Path
	OpRename    Op = 8  // Path -> Path2, Flags (RENAME_*)
	OpLink      Op = 9  // existing Path, new name Path2
	OpSymlink   Op = 10 // Path is the new link, Path2 its target (stored verbatim)
	OpSetattr   Op = 11 // Path, Flags (Set* mask), Mode, UID, GID, Atime, Mtime
	OpBarrier   Op = 12 // Path, or "" for the whole tree
	OpBookmark  Op = 13 // Path holds the bookmark's name
	OpDirty     Op = 14 // Path, Offset, Length: content to read again from the master
	OpPrune     Op = 15 // Path (a directory), Data: the names it keeps, each ended by NUL; the rest goes
)

var opNames = [...]string{
	OpWrite: "write", OpTruncate: "truncate", OpFallocate: "fallocate",
	OpCreate: "create", OpMkdir: "mkdir", OpRmdir: "rmdir", OpUnlink: "unlink",
	OpRename: "rename", OpLink: "link", OpSymlink: "symlink", OpSetattr: "setattr",
	OpBarrier: "barrier", OpBookmark: "bookmark", OpDirty: "dirty", OpPrune: "prune",
}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Valid reports whether o is a known operation.
func (o Op) Valid() bool { return o >= OpWrite && o <= OpPrune }

// Setattr mask bits carried in Record.Flags. Wire format.
const (
	SetMode  uint32 = 1 << 0
	SetOwner uint32 = 1 << 1
	SetAtime uint32 = 1 << 2
	SetMtime uint32 = 1 << 3
)

// Record is one change to the protected tree. Paths are relative to the
// protected root, slash-separated, without a leading slash; the replica
// must still treat them as hostile input.
type Record struct {
	Seq    uint64
	Op     Op
	Path   string
	Path2  string
	Offset int64
	Length int64
	Mode   uint32
	Flags  uint32
	UID    uint32
	GID    uint32
	Atime  int64 // ns since the epoch
	Mtime  int64 // ns since the epoch
	Data   []byte
}

func (r *Record) String() string {
	switch r.Op {
	case OpWrite:
		return fmt.Sprintf("#%d write %q off=%d len=%d", r.Seq, r.Path, r.Offset, len(r.Data))
	case OpRename:
		if r.Flags != 0 {
			return fmt.Sprintf("#%d rename %q -> %q flags=%#x", r.Seq, r.Path, r.Path2, r.Flags)
		}
		return fmt.Sprintf("#%d rename %q -> %q", r.Seq, r.Path, r.Path2)
	case OpLink, OpSymlink:
		return fmt.Sprintf("#%d %s %q -> %q", r.Seq, r.Op, r.Path, r.Path2)
	case OpTruncate:
		return fmt.Sprintf("#%d truncate %q size=%d", r.Seq, r.Path, r.Length)
	case OpFallocate, OpDirty:
		return fmt.Sprintf("#%d %s %q off=%d len=%d", r.Seq, r.Op, r.Path, r.Offset, r.Length)
	case OpCreate, OpMkdir:
		return fmt.Sprintf("#%d %s %q mode=%#o", r.Seq, r.Op, r.Path, r.Mode)
	case OpSetattr:
		s := fmt.Sprintf("#%d setattr %q", r.Seq, r.Path)
		if r.Flags&SetMode != 0 {
			s += fmt.Sprintf(" mode=%#o", r.Mode)
		}
		if r.Flags&SetOwner != 0 {
			s += fmt.Sprintf(" owner=%d:%d", r.UID, r.GID)
		}
		if r.Flags&(SetAtime|SetMtime) != 0 {
			s += " times"
		}
		return s
	default:
		return fmt.Sprintf("#%d %s %q", r.Seq, r.Op, r.Path)
	}
}
