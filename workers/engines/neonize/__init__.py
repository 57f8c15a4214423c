"""The real WhatsApp engine, through the `neonize` package (whatsmeow compiled into a shared
library). Import `engine` only inside an engine host process: the library is not fork-safe, keeps
process-wide state without locks, and aborts the process on some misuse."""
