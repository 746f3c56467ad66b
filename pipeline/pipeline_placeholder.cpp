// Placeholder translation unit so the stages library exists before its first node lands.
namespace shardquant {}
