"""The keywords of the demo catalogue: nouns that only the keyword fields of titles and notes use.

Real nouns come first, roughly from most to least common; generated compounds of two English
words ("saltwhisper", "ravenhollow") follow them, in a fixed shuffled order, as the long tail.
`demo_text.py` draws them with Zipf weights over that order. No other word of the demo text
shares a lexeme (the English stemmer's) with a keyword, so the share of labs that match one is
known in advance (tests/test_demo.py checks the lexemes).
"""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# fmt: off
REAL_NOUNS = _words("""
world house city night war love river sea garden home road heart water light door window mother
father friend king queen island forest mountain country village fire stone tree sun moon star sky
rain snow winter summer morning evening dream memory secret letter voice shadow ghost mirror ship
train bridge tower wall gate street church castle palace farm field valley desert ocean coast
harbor lake storm wind ice blood bone hand eye face name truth death journey voyage map clock key
school table kitchen room floor roof wood paper glass gold silver iron salt wine milk honey apple
orange lemon cherry plum rose flower grass seed root branch brother sister daughter son husband
widow baby girl boy stranger neighbour teacher doctor soldier sailor captain pilot hunter priest
monk nun judge lawyer spy detective witness servant slave prince princess duke emperor empress
knight lord lady bishop pope saint prophet witch wizard giant dragon monster beast angel devil
demon fairy dog cat horse bear fox rabbit hare rat crow raven owl hawk eagle swan duck hen chicken
sparrow robin heron whale shark fish snake serpent frog toad spider bee ant moth butterfly beetle
lion tiger elephant monkey camel goat cow pig bull donkey mule bed chair desk lamp candle lantern
bottle cup plate bowl fork spoon box basket bag coat hat boot shoe glove ring crown sword shield
spear bow arrow gun bullet bomb rope chain lock bell drum flute violin piano guitar harp trumpet
radio telephone camera photograph statue coin ticket passport diary notebook pen pencil envelope
stamp parcel afternoon midnight dawn dusk sunset sunrise season century decade year month week day
hour minute moment instant future past present fog mist thunder lightning hail frost dew tide wave
shore beach cliff cave hill peak ridge slope canyon gorge glacier swamp marsh meadow orchard
vineyard pasture prairie jungle tundra steppe reef lagoon bay cape delta estuary waterfall spring
fountain pond creek canal dam cottage cabin hut tent barn mill factory warehouse workshop studio
office shop bakery inn tavern hotel hospital court library museum theatre cinema station airport
port dock pier lighthouse temple mosque cathedral chapel abbey monastery tomb grave cemetery
fortress citadel dungeon cellar attic staircase corridor balcony courtyard square avenue alley lane
path trail highway tunnel kingdom republic nation state province colony frontier border town suburb
neighbourhood parish army navy fleet regiment battle siege treaty peace rebellion uprising mutiny
conspiracy coup election parliament senate council assembly committee party government throne
medicine disease plague fever cure poison potion drug remedy vaccine virus bacteria cell gene atom
molecule electron crystal metal copper lead tin zinc mercury diamond emerald ruby sapphire pearl
jade amber ivory marble granite slate clay sand dust ash smoke flame ember spark coal oil steam
robot android satellite rocket spaceship starship planet comet asteroid galaxy nebula quasar orbit
eclipse telescope microscope laboratory experiment equation formula theorem proof paradox puzzle
riddle cipher code signal message mind soul body brain skull skin hair tongue lip mouth nose ear
neck shoulder arm finger thumb leg knee toe heel chest breath heartbeat pulse scar tear sweat anger
joy sorrow shame pride guilt envy greed desire loneliness silence courage faith wisdom folly
madness sanity revenge vengeance duty loyalty promise oath vow curse blessing prayer miracle sin
virtue childhood youth age marriage wedding funeral birthday feast festival holiday carnival parade
circus fair match race contest prize trophy medal gift bargain debt loan tax wage salary fortune
treasure harbour anchor mast deck cargo crew compass sextant chart raft canoe boat yacht ferry
submarine dice toy doll kite ball breakfast lunch dinner supper meal soup stew pie cake biscuit
cheese butter egg meat beef pork lamb sausage bacon rice wheat corn bean pea potato carrot onion
garlic pepper sugar chocolate vanilla cinnamon ginger saffron herb cotton wool linen leather velvet
lace thread needle button pocket sleeve collar shawl cloak veil mask costume uniform cello ballet
symphony concerto sonata melody harmony chorus hymn lullaby anthem problem answer idea plan choice
chance luck risk danger accident mistake failure success victory defeat discovery adventure crime
murder trial verdict sentence confession alibi clue evidence motive weapon ransom kidnapping heist
robbery fraud scandal rumour gossip lie architect builder carpenter blacksmith butcher tailor
weaver potter painter sculptor poet novelist composer singer dancer actor musician clown magician
juggler acrobat merchant banker clerk accountant shepherd miner maid nurse surgeon chemist
astronomer philosopher mathematician historian scientist inventor pioneer settler refugee pilgrim
tourist nomad hermit heir bride groom tool hammer nail saw axe shovel spade ladder bucket barrel
wheel cart wagon carriage sledge bicycle motorcycle truck tram subway railway locomotive cannon
musket pistol rifle dagger blade helmet armour banner flag umbrella comb brush soap towel blanket
pillow curtain carpet rug sofa cupboard drawer mantel fireplace chimney oven stove kettle teapot
jug jar vase pot pan ladybird dragonfly firefly grasshopper cricket snail slug worm caterpillar
scorpion lizard crocodile turtle tortoise dolphin seal otter beaver badger hedgehog squirrel mole
bat weasel ferret lynx leopard cheetah panther jaguar gorilla zebra giraffe hippo kangaroo koala
penguin parrot peacock pelican flamingo stork crane vulture falcon kestrel magpie pigeon dove
nightingale lark wren finch starling swallow gull albatross octopus squid jellyfish crab lobster
oyster shrimp eel herring oak pine elm birch willow maple beech cedar cypress yew holly ivy fern
moss lichen reed bamboo cactus palm vine thorn bramble nettle thistle daisy tulip lily orchid poppy
lavender jasmine lotus sunflower clover heather sapling acorn chestnut walnut almond hazelnut peach
pear grape fig date melon lime apricot raspberry strawberry blueberry blackberry gooseberry currant
boulder pebble rock fossil candlelight moonlight sunlight starlight firelight lamplight daylight
twilight weekend sculpture portrait landscape drawing gallery exhibition newspaper magazine
pamphlet poster leaflet manuscript scroll atlas calendar almanac dictionary encyclopedia furnace
forge anvil kiln loom spindle wheelbarrow scarecrow windmill watermill shipwreck iceberg whirlpool
avalanche earthquake flood drought famine wildfire hurricane tornado blizzard monsoon typhoon
harvest sowing ploughing zeppelin balloon airship glider aeroplane helicopter parachute oracle
sphinx unicorn griffin phoenix mermaid centaur troll goblin dwarf gnome ogre vampire werewolf
zombie banshee estate manor mansion villa farmhouse homestead ranch plantation doorway threshold
hallway landing porch verandah terrace greenhouse conservatory thunderstorm rainbow snowflake
icicle puddle whistle horn siren alarm murmur scream laughter applause scent perfume fragrance
odour stench footprint fingerprint silhouette reflection dowry heirloom keepsake souvenir trinket
relic talisman amulet ink parchment tapestry mosaic fresco mural server cluster kernel processor
pipeline spreadsheet keyboard screen monitor printer cable battery circuit transistor antenna
microphone speaker headphone matrix vector tensor integer fraction decimal percentage ratio angle
triangle circle sphere cube pyramid spiral helix curve tangent gravity magnetism friction momentum
velocity acceleration pressure temperature density mass weight energy radiation heat weather ozone
permafrost economy inflation recession budget profit loss investment stock bond shareholder pension
mortgage insurance contract invoice receipt corporation company firm agency ministry department
embassy consulate monarchy tyranny dictatorship anarchy hero rebel traitor assassin mercenary
pirate smuggler bandit outlaw sheriff marshal ranger cowboy lumberjack trapper prospector gambler
lawn hedge fence gatepost mailbox lamppost streetlight pavement kerb gutter drain sewer pipe valve
pump boiler thermostat banknote wallet purse feather fur scale claw antler tusk beak wing tail mane
paw fin shell nest hive burrow den lair cocoon dumpling noodle pancake waffle muffin croissant
pretzel bagel pudding custard jelly jam marmalade syrup toffee caramel fudge candy lollipop
lemonade cider beer ale whisky brandy rum gin vodka champagne cocktail mug goblet chalice flask
cauldron broomstick wand spellbook elevator escalator skyscraper apartment penthouse basement
garage driveway lorry van taxi limousine ambulance tractor bulldozer excavator quarry mine shaft
pit gem jewel necklace bracelet earring brooch locket pendant tiara stadium arena gymnasium
playground zoo aquarium planetarium observatory university college academy seminary seminar exam
dissertation sermon parable psalm gospel scripture verse orchestra band choir quartet duet solo
rhyme limerick sonnet comedy tragedy farce satire parody fable legend myth saga clockwork gear cog
lever pulley piston prism steeple spire dome arch pillar column beam rafter sailboat schooner
galleon frigate warship battleship cruiser lifeboat buoy harbourmaster backpack suitcase trunk
crate postcard telegram locksmith watchmaker clockmaker goldsmith silversmith glassblower
bookbinder typesetter cartographer navigator apprentice journeyman nephew niece cousin aunt uncle
grandmother grandfather grandson granddaughter stepmother godmother twin landlord tenant lodger
guest host visitor customer client student pupil professor dean principal headmaster mayor governor
minister ambassador chancellor president premier colonel major lieutenant sergeant commodore
""")

# compounds: every head with every tail, but for those written as real nouns above
COMPOUND_HEADS = _words("""
ash amber anchor apple arrow bay bear bee bell birch bird blood bone bramble brass briar candle
cedar cinder clay cloud coal copper coral crow deer dew dove dragon drift dust eagle ember fern fire
flint fog fox frost glass gold grain hare hawk hazel heath hedge honey horn horse ice ink iron ivy
jade kestrel lake lamp lark leaf lily marsh mill mist moon moss moth night oak owl pearl pine plum
rain raven reed river rook rose rowan rust salt sand sea shadow shell silk silver sky slate snow
spark star stone storm sun swan thistle thorn thunder tide timber wave whale wheat willow wind wing
winter wolf wren yew
""")
COMPOUND_TAILS = _words("""
light fall wood water glass keeper song ward fire stone smith wright craft work mark bloom blade
crest heart hold hollow fen gate horn weaver watch wing shade shard thread spire vale wake weed wind
root rock reach moor path pool ridge run scar shore spring step thorn vein veil wheel whisper wort
beam bell berry bird bite bound brand brook burn cap cloak coat cross crown cup dance drop dust eye
feather flower fly forge grove guard hall haven hearth hound jar kin knot lock loft mill nest pit
press rider sail seed shell silk singer spark spur storm strand tide tongue tower track vane
""")
# fmt: on
