package azure

// IsEmulator exposes emulator to the tests.
var IsEmulator = emulator
