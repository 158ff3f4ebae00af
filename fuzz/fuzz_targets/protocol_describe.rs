//! spark-protocol description reader: any bytes give a description or an error, never a panic, and
//! a description's iterators end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_protocol::wire::describe::Description;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Description::parse(data) {
        assert!(d.functions().count() <= data.len());
        assert!(d.variables().count() <= data.len());
    }
});
