//! End-to-end encryption: vodozemac Olm/Megolm wrappers, SFrame media frames, verification, key backup.
