//! (being written)
pub struct DingTalkClient;
