/* Session directories: private (0700) scratch directories of one run of
 * vmshadow — shadow copies, NBD sockets, images being extracted — that a
 * killed run leaves behind and a later run removes. Each records its owner
 * in a file .vms-owner inside it: "PID START\n", START being the owner's
 * start time (/proc/PID/stat field 22), so that a reused pid is not taken
 * for the owner. A directory is stale when its owner file names a process
 * that is gone (no such pid, or another start time). A directory is made
 * under a staging name that carries the owner too (".vms-new-PID-START-…"),
 * and renamed to its name once its owner file is written, so a run killed
 * between mkdir and owner file leaves a staging directory that the next
 * sweep removes; any other directory without an owner file is never touched.
 * Removal never follows a link (vms_rmtree_at). docs/security.md. */
#ifndef VMS_SESSION_DIR_H
#define VMS_SESSION_DIR_H

#define VMS_SESSION_OWNER_FILE ".vms-owner"

/* Make directory name in parentfd, mode 0700, with its owner file, and
 * return its fd (O_DIRECTORY, opened without following a link). A name
 * ending in XXXXXX gets those replaced by random characters (retried while
 * the name exists), and *name_out (if not NULL) receives the name made
 * (caller frees). Without XXXXXX an existing name fails with EEXIST.
 * -1 with errno and no message: the caller says what the directory is. */
extern int vms_session_dir_make (int parentfd, const char *name,
                                 char **name_out);

/* Remove session directory name of parentfd whose fd is fd (as
 * vms_session_dir_make returned): its contents through fd, then the
 * directory itself if it is still empty, so that a directory swapped in
 * under that name meanwhile is never emptied. Closes fd. -1 with errno. */
extern int vms_session_dir_remove (int parentfd, const char *name, int fd);

/* Remove every stale session directory in parentfd whose name starts with
 * prefix ("" for any) and that belongs to this user. Returns how many were
 * removed, or -1 with errno (nothing readable in parentfd). */
extern int vms_session_dir_sweep (int parentfd, const char *prefix);

#endif /* VMS_SESSION_DIR_H */
