// Package store is nightshift's one storage boundary: small interfaces by concern that
// every part of nightshift uses to reach storage, and the errors and limits they share.
//
//   - Queues: Azure Storage queue semantics — create, enqueue with a delay and a time to
//     live, receive with a visibility timeout (dequeue counts, pop receipts), update,
//     delete, peek, count.
//   - Blobs: containers of named blobs with ETags, conditional writes (If-Match,
//     If-None-Match: *), content types, metadata, size-bounded reads and listing by
//     prefix in name order.
//   - Leases: blob leases for singleton locks and moving an entry exactly once.
//   - Indexer: blob index tags, written with the blob (PutOptions.Tags, ValidTags) and
//     searched with Find Blobs by Tags expressions (FindByTags, FindAll; ParseWhere
//     evaluates them for drivers without a service).
//
// Store combines the first three. Failures map onto ErrNotFound, ErrConflict, ErrTooLarge,
// ErrInvalid, ErrForbidden and ErrUnavailable, tested with errors.Is; a driver keeps its own error
// wrapped as well.
// Arguments are validated the same way by every driver (ValidQueueName,
// ValidContainerName, CheckEnqueue, …), so a bad name or duration fails alike on every
// driver, with a message naming the bound.
//
// # Drivers
//
// Package store/azure implements Store over the azqueue and azblob SDK clients; it is
// meant to become the only non-test code importing them. Package store/memory implements
// it in memory with the same semantics and an injectable clock, for tests and for running
// an app without a storage account.
//
// # Conformance
//
// Package store/storetest is one conformance suite that every driver passes: the memory
// driver's tests run it with a fake clock, the Azure driver's tests run it against
// Azurite (failing, not skipping, under CI=true). A behaviour a caller relies on belongs
// in the suite; where Azurite and Azure differ, the interface documents the difference
// and the suite asserts only what both do.
package store
