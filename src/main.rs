fn main() {
    println!("ferry: not built yet");
}
