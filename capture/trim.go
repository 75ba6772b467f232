package capture

/*
#include <malloc.h>
*/
import "C"

// TrimCHeap returns the C heap's free memory to the system. SQLite
// connections of databases that went cold free their memory into glibc's
// arenas, which keep it (and the process's RSS) unless asked.
func TrimCHeap() { C.malloc_trim(0) }
