//! The sizes and counts the original implementations enforce on the wire, each with its source.
//!
//! Sources: CCL = spark/core-communication-lib (the Spark Core's protocol library), SP =
//! spark/spark-protocol (the original Node.js server), DOS = particle-iot/device-os (the later
//! firmware). These are facts about those programs, kept so that a session can refuse what the peer
//! would refuse (or disconnect on) rather than find out from the peer.

/// Length of a device id in bytes (the STM32 96-bit unique id; 24 hex characters when printed).
pub const DEVICE_ID_LEN: usize = 12;

/// The Core's receive buffer (CCL `SparkProtocol::QUEUE_SIZE`, 640). A frame whose length prefix is
/// larger makes the Core drop the connection, so an encrypted message to a Core, padding included,
/// must fit in it.
pub const CORE_QUEUE_SIZE: usize = 640;

/// Longest function name the Core reports and matches (CCL `MAX_FUNCTION_KEY_LENGTH`, 12).
pub const CORE_MAX_FUNCTION_NAME_LEN: usize = 12;

/// Longest variable name the Core reports and matches (CCL `MAX_VARIABLE_KEY_LENGTH`, 12).
pub const CORE_MAX_VARIABLE_NAME_LEN: usize = 12;

/// Longest function argument the Core accepts: 63 bytes. CCL keeps the argument in a 64-byte buffer
/// with a terminating NUL (`MAX_FUNCTION_ARG_LENGTH = 64`), and an argument of 64 bytes or more makes
/// `handle_received_message` fail, which disconnects.
pub const CORE_MAX_FUNCTION_ARG_LEN: usize = 63;

/// Longest event name and longest event data the Core's publish encoder sends (CCL `events.cpp`
/// `event()` measures both with `strnlen(.., 255)`).
pub const CORE_MAX_PUBLISH_LEN: usize = 255;

/// Longest subscription filter and device id the Core's subscription encoder sends (CCL `events.cpp`
/// `subscription_prelude` / `subscription`, `strnlen(.., 63)`).
pub const CORE_MAX_SUBSCRIPTION_FILTER_LEN: usize = 63;

/// Size of each event-handler filter buffer on the Core (CCL `FilteringEventHandler::filter`, 64):
/// a delivered event matches a handler when its name starts with the filter.
pub const CORE_EVENT_FILTER_BUFFER_LEN: usize = 64;

/// Event time to live that is not written on the wire: the Core omits Max-Age when the TTL is 60 s
/// (CCL `events.cpp`), and a missing Max-Age means 60 s in CoAP (RFC 7252 §5.10.5).
pub const DEFAULT_EVENT_TTL: u32 = 60;

/// Largest TTL the Core's 3-byte Max-Age can carry (CCL `events.cpp` writes 24 bits).
pub const MAX_EVENT_TTL: u32 = 0x00FF_FFFF;

/// Payload size of the Core's Hello: product id, product firmware version, 16-bit flags (CCL
/// `SparkProtocol::hello`).
pub const CORE_HELLO_PAYLOAD_LEN: usize = 6;

/// Payload size of UpdateBegin: flags, chunk size, file size, destination, address (SP `Flasher.js`
/// `begin_update`, DOS `chunked_transfer.cpp`).
pub const UPDATE_BEGIN_PAYLOAD_LEN: usize = 12;

/// Chunk size the original server uses (SP `Flasher.js`, 256); the last chunk is zero-padded to it.
pub const SP_CHUNK_SIZE: usize = 256;

/// Largest chunk size the original server accepts in its settings (SP `Flasher.js`
/// `MAX_CHUNK_SIZE`, 594).
pub const SP_MAX_CHUNK_SIZE: usize = 594;

/// How many ChunkMissed messages the original server tolerates in one transfer before aborting (SP
/// `Flasher.js` `MAX_MISSED_CHUNKS`, 10).
pub const SP_MAX_MISSED_CHUNKS: usize = 10;

/// Default OTA chunk size of Device OS (DOS `protocol.h` `DEFAULT_OTA_CHUNK_SIZE`, 512).
pub const DOS_DEFAULT_OTA_CHUNK_SIZE: usize = 512;

/// Most chunk indices Device OS lists in one ChunkMissed (DOS `chunked_transfer.cpp`
/// `MISSED_CHUNKS_TO_SEND`, 40; 20 on Argon/ASOM).
pub const DOS_MISSED_CHUNKS_TO_SEND: usize = 40;

/// Longest function or variable name on Device OS (DOS `protocol_defs.h`, 64).
pub const DOS_MAX_NAME_LEN: usize = 64;

/// Longest function argument on Device OS (DOS `protocol_defs.h`, 1024).
pub const DOS_MAX_FUNCTION_ARG_LEN: usize = 1024;

/// Longest event name on Device OS (DOS `protocol_defs.h`, 64).
pub const DOS_MAX_EVENT_NAME_LEN: usize = 64;

/// Longest event data on Device OS (DOS `protocol_defs.h`, 1024).
pub const DOS_MAX_EVENT_DATA_LEN: usize = 1024;

/// Token length the Spark dialect uses for requests that expect a response (CCL and SP both use one
/// byte; messages without a response carry none).
pub const SPARK_TOKEN_LEN: usize = 1;
